//! Resource classes and traits: the standard ones (from `catalog`) and the
//! custom ones (`CUSTOM_*`) that admins create.

use oxistack_model::time::Timestamp;
use oxistack_model::AppError;
use oxistack_store::placement as db;

use crate::catalog::{self, is_standard_class, is_standard_trait, is_valid_custom_name};
use crate::Placement;

/// A resource class or trait; standard ones have no timestamp.
#[derive(Debug, Clone, PartialEq)]
pub struct Named {
    pub name: String,
    pub updated_at: Option<Timestamp>,
}

fn standard(name: &str) -> Named {
    Named {
        name: name.to_string(),
        updated_at: None,
    }
}

/// Which traits `GET /traits` returns.
#[derive(Debug, Clone, Default)]
pub struct TraitFilter {
    /// `name=in:A,B`.
    pub names: Option<Vec<String>>,
    /// `name=startswith:PREFIX`.
    pub prefix: Option<String>,
    /// `associated=true|false`.
    pub associated: Option<bool>,
}

pub fn invalid_custom_class(name: &str) -> AppError {
    AppError::bad_request(format!(
        "JSON does not validate: {name:?} does not match '^CUSTOM_[A-Z0-9_]+$'"
    ))
}

pub fn invalid_trait(name: &str) -> AppError {
    AppError::bad_request(format!(
        "The trait is invalid. A valid trait must be no longer than 255 characters, start with the prefix \"CUSTOM_\" and use following characters: \"A\"-\"Z\", \"0\"-\"9\" and \"_\" (got {name:?})"
    ))
}

impl Placement {
    pub async fn resource_classes(&self) -> Result<Vec<Named>, AppError> {
        let mut tx = self.store.begin().await?;
        let mut out: Vec<Named> = catalog::STANDARD_CLASSES
            .iter()
            .map(|n| standard(n))
            .collect();
        out.extend(
            db::list_custom_classes(&mut tx)
                .await?
                .into_iter()
                .map(|r| Named {
                    name: r.name,
                    updated_at: Some(r.updated_at),
                }),
        );
        Ok(out)
    }

    pub async fn resource_class(&self, name: &str) -> Result<Named, AppError> {
        if is_standard_class(name) {
            return Ok(standard(name));
        }
        let mut tx = self.store.begin().await?;
        db::get_custom_class(&mut tx, name)
            .await?
            .map(|r| Named {
                name: r.name,
                updated_at: Some(r.updated_at),
            })
            .ok_or_else(|| AppError::not_found(format!("No such resource class {name}.")))
    }

    /// Creates a custom class; `Ok(false)` when it already existed and
    /// `exists_ok` (PUT at 1.7+), a conflict otherwise (POST).
    pub async fn create_resource_class(
        &self,
        name: &str,
        exists_ok: bool,
    ) -> Result<bool, AppError> {
        if !is_valid_custom_name(name) {
            return Err(invalid_custom_class(name));
        }
        let mut tx = self.store.begin().await?;
        if db::get_custom_class(&mut tx, name).await?.is_some() {
            if exists_ok {
                return Ok(false);
            }
            return Err(AppError::conflict(format!(
                "Conflicting resource class already exists: {name}"
            ))
            .with_code(crate::providers::DUPLICATE_NAME));
        }
        db::insert_custom_class(&mut tx, name).await?;
        tx.commit().await.map_err(oxistack_store::db_err)?;
        Ok(true)
    }

    /// Renames a custom class (PUT before 1.7).
    pub async fn rename_resource_class(&self, old: &str, new: &str) -> Result<Named, AppError> {
        if is_standard_class(old) {
            return Err(AppError::bad_request(format!(
                "Cannot update standard resource class {old}"
            )));
        }
        if !is_valid_custom_name(new) {
            return Err(invalid_custom_class(new));
        }
        let mut tx = self.store.begin().await?;
        if db::get_custom_class(&mut tx, old).await?.is_none() {
            return Err(AppError::not_found(format!(
                "No such resource class {old}."
            )));
        }
        if old != new && db::get_custom_class(&mut tx, new).await?.is_some() {
            return Err(
                AppError::conflict(format!("Resource class already exists: {new}"))
                    .with_code(crate::providers::DUPLICATE_NAME),
            );
        }
        db::rename_custom_class(&mut tx, old, new).await?;
        let row = db::get_custom_class(&mut tx, new)
            .await?
            .ok_or_else(|| AppError::internal("renamed class vanished"))?;
        tx.commit().await.map_err(oxistack_store::db_err)?;
        Ok(Named {
            name: row.name,
            updated_at: Some(row.updated_at),
        })
    }

    pub async fn delete_resource_class(&self, name: &str) -> Result<(), AppError> {
        if is_standard_class(name) {
            return Err(AppError::bad_request(format!(
                "Cannot delete standard resource class {name}"
            )));
        }
        let mut tx = self.store.begin().await?;
        if db::get_custom_class(&mut tx, name).await?.is_none() {
            return Err(AppError::not_found(format!(
                "No such resource class {name}."
            )));
        }
        if db::class_has_inventory(&mut tx, name).await?
            || db::class_in_use(&mut tx, None, name).await?
        {
            return Err(AppError::conflict(format!(
                "Error in delete resource class: Cannot delete resource class {name}. Class is in use in inventory."
            )));
        }
        db::delete_custom_class(&mut tx, name).await?;
        tx.commit().await.map_err(oxistack_store::db_err)?;
        Ok(())
    }

    pub async fn traits(&self, f: &TraitFilter) -> Result<Vec<String>, AppError> {
        let mut tx = self.store.begin().await?;
        let mut all: Vec<String> = catalog::standard_traits()
            .iter()
            .map(|s| s.to_string())
            .collect();
        all.extend(
            db::list_custom_traits(&mut tx)
                .await?
                .into_iter()
                .map(|r| r.name),
        );
        let associated = match f.associated {
            Some(_) => Some(db::associated_traits(&mut tx).await?),
            None => None,
        };
        all.sort();
        Ok(all
            .into_iter()
            .filter(|t| f.names.as_ref().is_none_or(|n| n.contains(t)))
            .filter(|t| f.prefix.as_deref().is_none_or(|p| t.starts_with(p)))
            .filter(|t| match (&associated, f.associated) {
                (Some(a), Some(want)) => a.contains(t) == want,
                _ => true,
            })
            .collect())
    }

    pub async fn trait_exists(&self, name: &str) -> Result<bool, AppError> {
        let mut tx = self.store.begin().await?;
        crate::providers::trait_exists(&mut tx, name).await
    }

    /// Creates a custom trait; false when it already existed.
    pub async fn create_trait(&self, name: &str) -> Result<bool, AppError> {
        if is_standard_trait(name) {
            return Ok(false);
        }
        if !is_valid_custom_name(name) {
            return Err(invalid_trait(name));
        }
        let mut tx = self.store.begin().await?;
        if db::get_custom_trait(&mut tx, name).await?.is_some() {
            return Ok(false);
        }
        db::insert_custom_trait(&mut tx, name).await?;
        tx.commit().await.map_err(oxistack_store::db_err)?;
        Ok(true)
    }

    pub async fn delete_trait(&self, name: &str) -> Result<(), AppError> {
        if is_standard_trait(name) {
            return Err(AppError::bad_request(format!(
                "Cannot delete standard trait {name}."
            )));
        }
        let mut tx = self.store.begin().await?;
        if db::get_custom_trait(&mut tx, name).await?.is_none() {
            return Err(AppError::not_found(format!("No such trait(s): {name}")));
        }
        if db::associated_traits(&mut tx)
            .await?
            .iter()
            .any(|t| t == name)
        {
            return Err(AppError::conflict(format!(
                "The trait {name} is in use by a resource provider."
            )));
        }
        db::delete_custom_trait(&mut tx, name).await?;
        tx.commit().await.map_err(oxistack_store::db_err)?;
        Ok(())
    }
}
