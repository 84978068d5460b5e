//! Nova's server state model: `vm_state` (the stable state), `task_state`
//! (the operation in progress), `power_state` (what the hypervisor reports),
//! and the API `status` derived from the first two.
//!
//! ```text
//!   building --ok--> active <--start-- stopped
//!      |               |  \--stop------^
//!      |               |--reboot (task: reboot_started[_hard]) --> active
//!      v               v
//!    error          deleted (task: deleting)
//! ```
//!
//! Actions are accepted or refused at once (`check_action`), with the reason
//! Nova gives (409 "Cannot '<action>' instance ... while it is in vm_state X").

use serde::{Deserialize, Serialize};

use crate::error::AppError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VmState {
    Building,
    Active,
    Stopped,
    Error,
    Deleted,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    Scheduling,
    Networking,
    BlockDeviceMapping,
    Spawning,
    PoweringOff,
    PoweringOn,
    Rebooting,
    RebootingHard,
    RebootStarted,
    RebootStartedHard,
    Deleting,
}

/// Nova's power_state integers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PowerState {
    NoState = 0,
    Running = 1,
    Paused = 3,
    Shutdown = 4,
    Crashed = 6,
    Suspended = 7,
}

impl VmState {
    pub fn as_str(&self) -> &'static str {
        match self {
            VmState::Building => "building",
            VmState::Active => "active",
            VmState::Stopped => "stopped",
            VmState::Error => "error",
            VmState::Deleted => "deleted",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "building" => VmState::Building,
            "active" => VmState::Active,
            "stopped" => VmState::Stopped,
            "error" => VmState::Error,
            "deleted" => VmState::Deleted,
            _ => return None,
        })
    }
}

impl TaskState {
    pub fn as_str(&self) -> &'static str {
        match self {
            TaskState::Scheduling => "scheduling",
            TaskState::Networking => "networking",
            TaskState::BlockDeviceMapping => "block_device_mapping",
            TaskState::Spawning => "spawning",
            TaskState::PoweringOff => "powering-off",
            TaskState::PoweringOn => "powering-on",
            TaskState::Rebooting => "rebooting",
            TaskState::RebootingHard => "rebooting_hard",
            TaskState::RebootStarted => "reboot_started",
            TaskState::RebootStartedHard => "reboot_started_hard",
            TaskState::Deleting => "deleting",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "scheduling" => TaskState::Scheduling,
            "networking" => TaskState::Networking,
            "block_device_mapping" => TaskState::BlockDeviceMapping,
            "spawning" => TaskState::Spawning,
            "powering-off" => TaskState::PoweringOff,
            "powering-on" => TaskState::PoweringOn,
            "rebooting" => TaskState::Rebooting,
            "rebooting_hard" => TaskState::RebootingHard,
            "reboot_started" => TaskState::RebootStarted,
            "reboot_started_hard" => TaskState::RebootStartedHard,
            "deleting" => TaskState::Deleting,
            _ => return None,
        })
    }
}

impl PowerState {
    pub fn from_i64(v: i64) -> Self {
        match v {
            1 => PowerState::Running,
            3 => PowerState::Paused,
            4 => PowerState::Shutdown,
            6 => PowerState::Crashed,
            7 => PowerState::Suspended,
            _ => PowerState::NoState,
        }
    }
}

/// The API `status` for a (vm_state, task_state) pair, as Nova's
/// `nova/api/openstack/common.py` state map has it.
pub fn api_status(vm: VmState, task: Option<TaskState>) -> &'static str {
    match (vm, task) {
        (VmState::Building, _) => "BUILD",
        (_, Some(TaskState::Deleting)) => "ACTIVE",
        (VmState::Active, Some(TaskState::Rebooting | TaskState::RebootStarted)) => "REBOOT",
        (VmState::Active, Some(TaskState::RebootingHard | TaskState::RebootStartedHard)) => {
            "HARD_REBOOT"
        }
        (VmState::Active, _) => "ACTIVE",
        (VmState::Stopped, _) => "SHUTOFF",
        (VmState::Error, _) => "ERROR",
        (VmState::Deleted, _) => "DELETED",
    }
}

/// The actions a user can ask of a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerAction {
    Start,
    Stop,
    RebootSoft,
    RebootHard,
    Delete,
    ConsoleOutput,
}

impl ServerAction {
    pub fn api_name(&self) -> &'static str {
        match self {
            ServerAction::Start => "start",
            ServerAction::Stop => "stop",
            ServerAction::RebootSoft | ServerAction::RebootHard => "reboot",
            ServerAction::Delete => "delete",
            ServerAction::ConsoleOutput => "get_console_output",
        }
    }
}

/// The transition an accepted action makes: the task_state recorded while it runs.
pub fn check_action(
    vm: VmState,
    task: Option<TaskState>,
    action: ServerAction,
) -> Result<Option<TaskState>, AppError> {
    use ServerAction as A;
    use VmState as V;
    let refuse = || {
        AppError::conflict(format!(
            "Cannot '{}' instance while it is in {}",
            action.api_name(),
            match task {
                Some(t) => format!("task_state {}", t.as_str()),
                None => format!("vm_state {}", vm.as_str()),
            }
        ))
    };
    let allowed = match action {
        // Delete is accepted in every state, also while already deleting (Nova's
        // `delete` checks no state): the delete in progress finishes the job.
        A::Delete => true,
        A::Start => vm == V::Stopped && task.is_none(),
        A::Stop => matches!(vm, V::Active | V::Error) && task.is_none(),
        // A hard reboot may interrupt a soft one, as Nova allows.
        A::RebootSoft => vm == V::Active && task.is_none(),
        A::RebootHard => {
            matches!(vm, V::Active | V::Stopped | V::Error)
                && matches!(
                    task,
                    None | Some(TaskState::Rebooting | TaskState::RebootStarted)
                )
        }
        A::ConsoleOutput => matches!(vm, V::Active | V::Stopped | V::Error),
    };
    if !allowed {
        return Err(refuse());
    }
    Ok(match action {
        A::Delete => Some(TaskState::Deleting),
        A::Start => Some(TaskState::PoweringOn),
        A::Stop => Some(TaskState::PoweringOff),
        A::RebootSoft => Some(TaskState::Rebooting),
        A::RebootHard => Some(TaskState::RebootingHard),
        A::ConsoleOutput => task,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_follows_nova() {
        assert_eq!(
            api_status(VmState::Building, Some(TaskState::Scheduling)),
            "BUILD"
        );
        assert_eq!(api_status(VmState::Active, None), "ACTIVE");
        assert_eq!(
            api_status(VmState::Active, Some(TaskState::Rebooting)),
            "REBOOT"
        );
        assert_eq!(
            api_status(VmState::Active, Some(TaskState::RebootingHard)),
            "HARD_REBOOT"
        );
        assert_eq!(api_status(VmState::Stopped, None), "SHUTOFF");
        assert_eq!(api_status(VmState::Error, None), "ERROR");
    }

    #[test]
    fn actions_are_refused_in_the_wrong_state() {
        assert!(check_action(VmState::Active, None, ServerAction::Start).is_err());
        assert!(check_action(VmState::Stopped, None, ServerAction::Stop).is_err());
        assert!(check_action(VmState::Building, None, ServerAction::RebootSoft).is_err());
        assert_eq!(
            check_action(
                VmState::Active,
                Some(TaskState::Deleting),
                ServerAction::Delete
            )
            .unwrap(),
            Some(TaskState::Deleting)
        );
        assert_eq!(
            check_action(VmState::Stopped, None, ServerAction::Start).unwrap(),
            Some(TaskState::PoweringOn)
        );
        assert_eq!(
            check_action(
                VmState::Active,
                Some(TaskState::Rebooting),
                ServerAction::RebootHard
            )
            .unwrap(),
            Some(TaskState::RebootingHard)
        );
    }

    #[test]
    fn names_round_trip() {
        for t in [
            TaskState::Scheduling,
            TaskState::PoweringOff,
            TaskState::RebootStartedHard,
            TaskState::Deleting,
        ] {
            assert_eq!(TaskState::parse(t.as_str()), Some(t));
        }
        for v in [
            VmState::Building,
            VmState::Active,
            VmState::Stopped,
            VmState::Error,
        ] {
            assert_eq!(VmState::parse(v.as_str()), Some(v));
        }
    }
}
