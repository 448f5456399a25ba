//! The configuration registry view: every service materialises the compacted config topic
//! (`webhook/<id>`, `template/<id>`, `tenant/<id>` settings, tombstone = delete) in memory at
//! start and follows it.
//!
//! Writes are optimistic: a record carries the version it expects to replace, and every view
//! applies a record only when that matches, so all views agree on the winner of a race. A
//! writer publishes, waits until its own view has applied its offset (read-your-writes), and
//! then reads back whether its write won.

use crate::secrets::{self, SecretCipher};
use hookmesh_bus::{Bus, BusError, Record};
use hookmesh_core::privacy::TenantSettings;
use hookmesh_core::webhook::{Template, Webhook};
use parking_lot::RwLock;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Entry {
    Webhook { expected_version: u64, webhook: Box<Webhook> },
    Template { expected_version: u64, template: Box<Template> },
    Tenant { expected_version: u64, settings: Box<TenantSettings> },
}

/// The registry as one service sees it.
#[derive(Default, Clone)]
pub struct RegistryState {
    pub webhooks: HashMap<String, Arc<Webhook>>,
    pub templates: HashMap<String, Arc<Template>>,
    /// Tenants' own settings (tenants that never set any are absent).
    pub tenants: HashMap<String, Arc<TenantSettings>>,
    /// Webhook ids per tenant, for routing.
    pub by_tenant: HashMap<String, Vec<Arc<Webhook>>>,
    /// Webhooks deleted since this view started (so a late job is dropped, not waited for).
    pub deleted_webhooks: std::collections::HashSet<String>,
    /// Webhooks whose stored secrets are in clear or under a retired master key.
    pub stale_secrets: std::collections::HashSet<String>,
}

impl RegistryState {
    /// Drops `old` from the per-tenant index.
    fn unindex(&mut self, old: &Webhook) {
        if let Some(list) = self.by_tenant.get_mut(&old.tenant_id) {
            list.retain(|w| w.id != old.id);
            if list.is_empty() {
                self.by_tenant.remove(&old.tenant_id);
            }
        }
    }
}

pub struct ConfigView {
    bus: Arc<dyn Bus>,
    topic: String,
    cipher: Option<SecretCipher>,
    state: RwLock<Arc<RegistryState>>,
    /// Offset of the last applied record (+1), i.e. how far this view has read.
    applied: watch::Sender<i64>,
}

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("version conflict: expected {expected}, found {found}")]
    Conflict { expected: u64, found: u64 },
    #[error(transparent)]
    Bus(#[from] BusError),
}

impl ConfigView {
    /// Reads the topic up to its current end, then follows it until `shutdown`.
    /// `cipher` encrypts signing secrets at rest (see [`crate::secrets`]).
    pub async fn start(
        bus: Arc<dyn Bus>,
        topic: &str,
        cipher: Option<SecretCipher>,
        shutdown: CancellationToken,
    ) -> Result<Arc<Self>, BusError> {
        let (applied, _) = watch::channel(0);
        let view = Arc::new(ConfigView {
            bus: bus.clone(),
            topic: topic.to_string(),
            cipher,
            state: RwLock::new(Arc::new(RegistryState::default())),
            applied,
        });
        let mut reader = bus.reader(topic).await?;
        let end = bus.end_offsets(topic).await?.first().copied().unwrap_or(0);
        while view.applied_offset() < end {
            let msg = reader.recv().await?;
            view.apply(&msg);
        }
        let follower = view.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    msg = reader.recv() => match msg {
                        Ok(m) => follower.apply(&m),
                        Err(e) => {
                            tracing::warn!(error = %e, "config registry: read failed, retrying");
                            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                        }
                    }
                }
            }
        });
        Ok(view)
    }

    /// Applies one record. The state is changed in place unless a snapshot of it is still held
    /// somewhere (then it is copied once), so reading a topic of n webhooks costs O(n).
    fn apply(&self, msg: &hookmesh_bus::Message) {
        let mut guard = self.state.write();
        let state = Arc::make_mut(&mut *guard);
        let (kind, id) = msg.key.split_once('/').unwrap_or(("", msg.key.as_str()));
        match (&msg.payload, kind) {
            (None, "webhook") => {
                if let Some(old) = state.webhooks.remove(id) {
                    state.unindex(&old);
                }
                state.stale_secrets.remove(id);
                state.deleted_webhooks.insert(id.to_string());
            }
            (None, "template") => {
                state.templates.remove(id);
            }
            (None, "tenant") => {
                state.tenants.remove(id);
            }
            (Some(bytes), _) => match serde_json::from_slice::<Entry>(bytes) {
                Ok(Entry::Webhook { expected_version, mut webhook }) => {
                    let current = state.webhooks.get(id).map_or(0, |w| w.version);
                    if current == expected_version {
                        let stale =
                            self.cipher.as_ref().is_some_and(|c| webhook.secrets.iter().any(|s| c.is_stale(&s.secret)));
                        webhook.secrets.retain_mut(|s| match secrets::open(self.cipher.as_ref(), &s.secret) {
                            Ok(clear) => {
                                s.secret = clear;
                                true
                            }
                            Err(why) => {
                                tracing::error!(webhook = %id, reason = %why, "a signing secret cannot be read and is skipped");
                                false
                            }
                        });
                        if stale {
                            state.stale_secrets.insert(id.to_string());
                        } else {
                            state.stale_secrets.remove(id);
                        }
                        state.deleted_webhooks.remove(id);
                        let webhook = Arc::new(*webhook);
                        if let Some(old) = state.webhooks.insert(id.to_string(), webhook.clone()) {
                            state.unindex(&old);
                        }
                        state.by_tenant.entry(webhook.tenant_id.clone()).or_default().push(webhook);
                    }
                }
                Ok(Entry::Template { expected_version, template }) => {
                    let current = state.templates.get(id).map_or(0, |t| t.version);
                    if current == expected_version {
                        state.templates.insert(id.to_string(), Arc::new(*template));
                    }
                }
                Ok(Entry::Tenant { expected_version, settings }) => {
                    let current = state.tenants.get(id).map_or(0, |t| t.version);
                    if current == expected_version {
                        state.tenants.insert(id.to_string(), Arc::new(*settings));
                    }
                }
                Err(e) => tracing::error!(key = %msg.key, error = %e, "config registry: unreadable record skipped"),
            },
            (None, _) => {}
        }
        drop(guard);
        self.applied.send_replace(msg.offset + 1);
    }

    pub fn applied_offset(&self) -> i64 {
        *self.applied.borrow()
    }

    /// A consistent snapshot of the registry.
    pub fn snapshot(&self) -> Arc<RegistryState> {
        self.state.read().clone()
    }

    pub fn webhook(&self, id: &str) -> Option<Arc<Webhook>> {
        self.state.read().webhooks.get(id).cloned()
    }

    /// The webhook at `min_version` or later. Another service may have produced work for a
    /// registry write this view has not applied yet (the config topic is read by every
    /// process at its own pace), so this waits up to `timeout` for it to arrive; it answers
    /// `None` at once for a webhook deleted since.
    pub async fn webhook_at_least(
        &self,
        id: &str,
        min_version: u64,
        timeout: std::time::Duration,
    ) -> Option<Arc<Webhook>> {
        let mut changes = self.applied.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            {
                let state = self.state.read();
                match state.webhooks.get(id) {
                    Some(w) if w.version >= min_version => return Some(w.clone()),
                    None if state.deleted_webhooks.contains(id) => return None,
                    _ => {}
                }
            }
            if tokio::time::timeout_at(deadline, changes.changed()).await.is_err() {
                return self.webhook(id);
            }
        }
    }

    pub fn template(&self, id: &str) -> Option<Arc<Template>> {
        self.state.read().templates.get(id).cloned()
    }

    /// A tenant's settings; defaults for a tenant that never set any.
    pub fn tenant_settings(&self, tenant_id: &str) -> Arc<TenantSettings> {
        self.state
            .read()
            .tenants
            .get(tenant_id)
            .cloned()
            .unwrap_or_else(|| Arc::new(TenantSettings::default_for(tenant_id)))
    }

    /// Changes whenever a record is applied; stages use it to rebuild their caches.
    pub fn changes(&self) -> watch::Receiver<i64> {
        self.applied.subscribe()
    }

    async fn wait_applied(&self, offset: i64) {
        let mut rx = self.applied.subscribe();
        let _ = rx.wait_for(|applied| *applied > offset).await;
    }

    /// Writes `webhook` (whose `version` must be `expected_version + 1`) and answers once this
    /// view shows the outcome.
    pub async fn put_webhook(&self, mut webhook: Webhook, expected_version: u64) -> Result<Arc<Webhook>, WriteError> {
        let id = webhook.id.clone();
        if let Some(c) = &self.cipher {
            for s in &mut webhook.secrets {
                s.secret = c.encrypt(&s.secret);
            }
        }
        let entry = Entry::Webhook { expected_version, webhook: Box::new(webhook) };
        self.write(format!("webhook/{id}"), &entry).await?;
        let now = self.webhook(&id);
        match now {
            Some(w) if w.version == expected_version + 1 => Ok(w),
            other => Err(WriteError::Conflict { expected: expected_version, found: other.map_or(0, |w| w.version) }),
        }
    }

    pub async fn put_template(&self, template: Template, expected_version: u64) -> Result<Arc<Template>, WriteError> {
        let id = template.id.clone();
        let entry = Entry::Template { expected_version, template: Box::new(template) };
        self.write(format!("template/{id}"), &entry).await?;
        match self.template(&id) {
            Some(t) if t.version == expected_version + 1 => Ok(t),
            other => Err(WriteError::Conflict { expected: expected_version, found: other.map_or(0, |t| t.version) }),
        }
    }

    /// Writes a tenant's settings (whose `version` must be `expected_version + 1`).
    pub async fn put_tenant_settings(
        &self,
        settings: TenantSettings,
        expected_version: u64,
    ) -> Result<Arc<TenantSettings>, WriteError> {
        let id = settings.tenant_id.clone();
        let entry = Entry::Tenant { expected_version, settings: Box::new(settings) };
        self.write(format!("tenant/{id}"), &entry).await?;
        match self.tenant_settings(&id) {
            t if t.version == expected_version + 1 => Ok(t),
            t => Err(WriteError::Conflict { expected: expected_version, found: t.version }),
        }
    }

    /// Rewrites every webhook whose secrets are in clear or under a retired master key, so the
    /// old key can be dropped. Races with other writers resolve by version (a lost race means
    /// someone else rewrote it already).
    pub async fn reencrypt_stale(&self) -> Result<usize, BusError> {
        if self.cipher.is_none() {
            return Ok(0);
        }
        let stale: Vec<Arc<Webhook>> =
            { self.snapshot().stale_secrets.iter().filter_map(|id| self.webhook(id)).collect() };
        let mut done = 0;
        for w in stale {
            let mut next = (*w).clone();
            next.version += 1;
            match self.put_webhook(next, w.version).await {
                Ok(_) => done += 1,
                Err(WriteError::Conflict { .. }) => {}
                Err(WriteError::Bus(e)) => return Err(e),
            }
        }
        if done > 0 {
            tracing::info!(webhooks = done, "secrets re-encrypted under the current master key");
        }
        Ok(done)
    }

    pub async fn delete_webhook(&self, id: &str) -> Result<(), BusError> {
        let (_, offset) = self.bus.publish(&self.topic, Record::tombstone(format!("webhook/{id}"))).await?;
        self.wait_applied(offset).await;
        Ok(())
    }

    pub async fn delete_template(&self, id: &str) -> Result<(), BusError> {
        let (_, offset) = self.bus.publish(&self.topic, Record::tombstone(format!("template/{id}"))).await?;
        self.wait_applied(offset).await;
        Ok(())
    }

    async fn write(&self, key: String, entry: &Entry) -> Result<(), BusError> {
        let bytes = serde_json::to_vec(entry).map_err(|e| BusError::Backend(e.to_string()))?;
        let (_, offset) = self.bus.publish(&self.topic, Record::new(key, bytes)).await?;
        self.wait_applied(offset).await;
        Ok(())
    }
}
