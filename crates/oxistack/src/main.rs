//! `oxistack`: the command line, and the wiring of the roles into one
//! process. Nothing else lives here.

mod config;
mod serve;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "oxistack",
    version,
    about = "An OpenStack-compatible cloud in one binary"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the whole cloud (every role) in this process.
    Serve(config::ServeArgs),
    /// Print the effective settings (defaults, DIR/oxistack.toml, environment, flags) as TOML.
    Config(config::ServeArgs),
    /// The metadata proxy of one tenant network (the network agent runs it
    /// inside the network's namespace): forwards guests' requests for
    /// 169.254.169.254 to the control plane's metadata socket.
    MetadataProxy(MetadataProxyArgs),
}

#[derive(clap::Args)]
struct MetadataProxyArgs {
    #[arg(long)]
    network_id: String,
    /// The control plane's metadata unix socket.
    #[arg(long)]
    upstream: std::path::PathBuf,
    #[arg(long)]
    listen: std::net::SocketAddr,
    #[arg(long)]
    pid_file: Option<std::path::PathBuf>,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => {
            tracing_subscriber::fmt()
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_from_env("OXISTACK_LOG")
                        .unwrap_or_else(|_| "info,sqlx=warn".into()),
                )
                .with_writer(std::io::stderr)
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                .init();
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            rt.block_on(serve::run(args))
        }
        Command::MetadataProxy(a) => {
            tracing_subscriber::fmt()
                .with_writer(std::io::stderr)
                .with_ansi(false)
                .init();
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(oxistack_netdev::metadata_proxy::run(
                oxistack_netdev::metadata_proxy::MetadataProxyConfig {
                    network_id: a.network_id,
                    upstream: a.upstream,
                    listen: a.listen,
                    pid_file: a.pid_file,
                },
            ))?;
            Ok(())
        }
        Command::Config(args) => {
            let settings = config::load(&args)?;
            print!("{}", toml::to_string_pretty(&settings)?);
            Ok(())
        }
    }
}
