//! [`VirtualRegistry`] over the SQL store: reads here, writes through the
//! one write path every record kind shares (`writes`).

use super::kind::{columns, read_record};
use super::model::{
    Actor, ListQuery, Page, RegistryError, VirtualServerDraft, VirtualServerPatch,
    VirtualServerRecord,
};
use super::rows::db_error;
use super::store::{page_limit, SqlRegistry};
use super::virtual_servers::apply_virtual_patch;
use super::VirtualRegistry;
use async_trait::async_trait;
use sqlx::Row;

#[async_trait]
impl VirtualRegistry for SqlRegistry {
    async fn list_virtual(
        &self,
        query: &ListQuery,
    ) -> Result<Page<VirtualServerRecord>, RegistryError> {
        let mut conditions = Vec::new();
        let mut binds: Vec<String> = Vec::new();
        if let Some(enabled) = query.enabled {
            conditions.push(format!("enabled = {}", i64::from(enabled)));
        }
        if let Some(search) = query.search.as_deref().filter(|s| !s.is_empty()) {
            let f = self.contains_fn();
            conditions.push(format!(
                "({f}(lower(name), $1) > 0 OR {f}(lower(description), $2) > 0)"
            ));
            binds.push(search.to_lowercase());
            binds.push(search.to_lowercase());
        }
        let filter = if conditions.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", conditions.join(" AND "))
        };
        let limit = page_limit(query.limit);
        let count_sql = format!("SELECT COUNT(*) FROM gw_virtual_servers{filter}");
        let mut count = sqlx::query(&count_sql);
        for b in &binds {
            count = count.bind(b.as_str());
        }
        let total: i64 = count
            .fetch_one(&self.pool)
            .await
            .and_then(|r| r.try_get(0))
            .map_err(db_error)?;
        let page_sql = format!(
            "SELECT {} FROM gw_virtual_servers{filter} ORDER BY name LIMIT {limit} OFFSET {}",
            columns::<VirtualServerDraft>(),
            query.offset
        );
        let mut page = sqlx::query(&page_sql);
        for b in &binds {
            page = page.bind(b.as_str());
        }
        let rows = page.fetch_all(&self.pool).await.map_err(db_error)?;
        let items = rows
            .iter()
            .map(|r| read_record(r, &self.cipher))
            .collect::<Result<_, _>>()?;
        Ok(Page {
            items,
            total: total.max(0) as u64,
            offset: query.offset,
            limit,
        })
    }

    async fn get_virtual(&self, name: &str) -> Result<VirtualServerRecord, RegistryError> {
        let row = sqlx::query(&format!(
            "SELECT {} FROM gw_virtual_servers WHERE name = $1",
            columns::<VirtualServerDraft>()
        ))
        .bind(name)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_error)?
        .ok_or_else(|| RegistryError::NotFound(name.to_string()))?;
        read_record(&row, &self.cipher)
    }

    async fn create_virtual(
        &self,
        draft: VirtualServerDraft,
        actor: &Actor,
    ) -> Result<VirtualServerRecord, RegistryError> {
        self.write_create(draft, actor).await
    }

    async fn update_virtual(
        &self,
        name: &str,
        draft: VirtualServerDraft,
        expected_version: i64,
        actor: &Actor,
    ) -> Result<VirtualServerRecord, RegistryError> {
        self.write_update(name, draft, expected_version, actor)
            .await
    }

    async fn patch_virtual(
        &self,
        name: &str,
        patch: VirtualServerPatch,
        expected_version: Option<i64>,
        actor: &Actor,
    ) -> Result<VirtualServerRecord, RegistryError> {
        self.write_patch(
            name,
            |draft: VirtualServerDraft| apply_virtual_patch(draft, patch),
            expected_version,
            actor,
        )
        .await
    }

    async fn delete_virtual(
        &self,
        name: &str,
        expected_version: Option<i64>,
        actor: &Actor,
    ) -> Result<(), RegistryError> {
        self.write_delete::<VirtualServerDraft>(name, expected_version, actor)
            .await
    }
}
