//! The registry's management API: `WebhookService`, `TemplateService` and `TenantService`.
//!
//! A write validates (naming the field), checks cross-object rules (names unique per tenant,
//! templates referenced exist in the same tenant), produces the record with the version it
//! expects, waits until this process's view has applied it, and answers from the view.

use chrono::Utc;
use hookmesh_core::render::{check_template_content_type, CompiledWebhook};
use hookmesh_core::signing::{generate_secret, generate_signing_key, public_key};
use hookmesh_core::template::{extract_fields, ContentType};
use hookmesh_core::webhook::{SignatureScheme, SigningSecret, Template, Webhook};
use hookmesh_core::ValidationError;
use hookmesh_proto::auth::Principal;
use hookmesh_proto::convert;
use hookmesh_proto::v1;
use hookmesh_registry::{ConfigView, WriteError};
use std::sync::Arc;
use std::time::Duration;
use tonic::{Request, Response, Status};

/// Grace period of a rotated-out secret unless the caller says otherwise.
pub const DEFAULT_ROTATION_GRACE: Duration = Duration::from_secs(24 * 3600);
/// Longest grace period a rotation may ask for.
pub const MAX_ROTATION_GRACE: Duration = Duration::from_secs(30 * 24 * 3600);

pub struct RegistryApi {
    pub registry: Arc<ConfigView>,
    /// The Kafka destinations the deployment configured (`kafka://<name>/<topic>`), each with
    /// the tenants that may use it (empty: every tenant).
    pub kafka_destinations: Arc<Vec<(String, Vec<String>)>>,
    /// hookmesh's own topics, which no Kafka destination may write to.
    pub topics: hookmesh_bus::topics::Topics,
}

pub fn invalid(e: ValidationError) -> Status {
    Status::invalid_argument(e.to_string())
}

fn write_error(e: WriteError) -> Status {
    match e {
        WriteError::Conflict { expected, found } => Status::aborted(format!(
            "version conflict: the object changed (expected version {expected}, now {found}); fetch it and retry"
        )),
        WriteError::Bus(b) => hookmesh_proto::status::backend(&b, b.is_retriable()),
    }
}

fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::now_v7().simple())
}

fn not_found(kind: &str, id: &str) -> Status {
    Status::not_found(format!("{kind} `{}` not found", hookmesh_core::error::escape_control(id)))
}

impl RegistryApi {
    /// A webhook the caller may see; another tenant's answers exactly like a missing one.
    fn webhook(&self, p: &Principal, id: &str) -> Result<Arc<Webhook>, Status> {
        self.registry.webhook(id).filter(|w| p.can_see(&w.tenant_id)).ok_or_else(|| not_found("webhook", id))
    }

    fn template(&self, p: &Principal, id: &str) -> Result<Arc<Template>, Status> {
        self.registry.template(id).filter(|t| p.can_see(&t.tenant_id)).ok_or_else(|| not_found("template", id))
    }

    /// Cross-object checks and a full compile (URL, headers, body with its template).
    fn check_webhook(&self, w: &Webhook) -> Result<(), Status> {
        w.validate().map_err(invalid)?;
        if let Some(k) = w.request.kafka() {
            // A tenant only learns of the destinations open to it.
            let open: Vec<&str> = self
                .kafka_destinations
                .iter()
                .filter(|(_, tenants)| tenants.is_empty() || tenants.contains(&w.tenant_id))
                .map(|(name, _)| name.as_str())
                .collect();
            if !open.contains(&k.connection.as_str()) {
                let configured = if open.is_empty() {
                    "none is open to this tenant (HOOKMESH_KAFKA_DESTINATIONS)".to_string()
                } else {
                    format!("open to this tenant: {}", open.join(", "))
                };
                return Err(Status::invalid_argument(format!(
                    "request.url: no Kafka destination `{}` in this deployment ({configured})",
                    k.connection
                )));
            }
            let t = &self.topics;
            let own = [&t.raw, &t.events, &t.jobs, &t.requests, &t.attempts, &t.dlq, &t.config];
            if own.contains(&&k.topic) || k.topic.starts_with("__") {
                return Err(Status::invalid_argument(format!(
                    "request.url: topic `{}` is hookmesh's or Kafka's own and cannot be a destination",
                    k.topic
                )));
            }
        }
        let snapshot = self.registry.snapshot();
        if let Some(other) = snapshot
            .by_tenant
            .get(&w.tenant_id)
            .and_then(|hooks| hooks.iter().find(|o| o.id != w.id && o.name.eq_ignore_ascii_case(&w.name)))
        {
            return Err(Status::already_exists(format!(
                "name: tenant `{}` already has a webhook named `{}` ({})",
                w.tenant_id, w.name, other.id
            )));
        }
        let template = match &w.request.template_id {
            Some(tid) => match snapshot.templates.get(tid) {
                Some(t) if t.tenant_id == w.tenant_id => Some(t.clone()),
                _ => {
                    return Err(Status::invalid_argument(format!(
                        "request.template_id: no template `{}` in tenant `{}`",
                        hookmesh_core::error::escape_control(tid),
                        hookmesh_core::error::escape_control(&w.tenant_id)
                    )))
                }
            },
            None => None,
        };
        if let Some(t) = &template {
            check_template_content_type(w, t).map_err(invalid)?;
        }
        CompiledWebhook::compile(Arc::new(w.clone()), template.as_deref()).map_err(invalid)?;
        Ok(())
    }

    /// A webhook that leaves its content type unset and renders with a registry template sends
    /// the template's content type.
    fn adopt_template_content_type(&self, w: &mut Webhook, unset: bool) {
        if !unset {
            return;
        }
        if let Some(t) = w.request.template_id.as_deref().and_then(|id| self.registry.template(id)) {
            if t.tenant_id == w.tenant_id {
                w.request.content_type = t.content_type;
            }
        }
    }

    fn check_template(&self, t: &Template) -> Result<(), Status> {
        t.validate().map_err(invalid)?;
        let snapshot = self.registry.snapshot();
        if let Some(other) = snapshot
            .templates
            .values()
            .find(|o| o.id != t.id && o.tenant_id == t.tenant_id && o.name.eq_ignore_ascii_case(&t.name))
        {
            return Err(Status::already_exists(format!(
                "name: tenant `{}` already has a template named `{}` ({})",
                t.tenant_id, t.name, other.id
            )));
        }
        Ok(())
    }

    async fn set_enabled(&self, p: &Principal, id: &str, enabled: bool) -> Result<Response<v1::Webhook>, Status> {
        let current = self.webhook(p, id)?;
        let mut w = (*current).clone();
        w.enabled = enabled;
        w.version = current.version + 1;
        w.updated_at = Utc::now();
        let saved = self.registry.put_webhook(w, current.version).await.map_err(write_error)?;
        Ok(Response::new(convert::webhook_to_proto(&saved)))
    }
}

/// A new secret of `scheme`: (stored value, what the caller is shown — the `whsec_` secret
/// itself, or the `whpk_` public key of a `whsk_` key).
fn new_secret(scheme: SignatureScheme) -> (String, String) {
    match scheme {
        SignatureScheme::V1 => {
            let s = generate_secret();
            (s.clone(), s)
        }
        SignatureScheme::V1a => {
            let k = generate_signing_key();
            let public = public_key(&k).expect("a generated key has a public key");
            (k, public)
        }
    }
}

/// Gives every switched-on scheme without a current secret a new one; answers what was made
/// (`v1` secret, `v1a` public key), each empty when none was.
fn ensure_secrets(w: &mut Webhook, now: chrono::DateTime<Utc>) -> (String, String) {
    let (mut secret, mut public) = (String::new(), String::new());
    for scheme in w.signature_schemes.clone() {
        if w.has_current_secret(scheme) {
            continue;
        }
        let (stored, shown) = new_secret(scheme);
        w.secrets.push(SigningSecret { secret: stored, created_at: now, expires_at: None });
        match scheme {
            SignatureScheme::V1 => secret = shown,
            SignatureScheme::V1a => public = shown,
        }
    }
    (secret, public)
}

fn content_type_unset(w: &v1::Webhook) -> bool {
    w.request.as_ref().is_none_or(|r| r.content_type.trim().is_empty())
}

fn check_version(expected: u64, actual: u64) -> Result<(), Status> {
    if expected != 0 && expected != actual {
        return Err(Status::aborted(format!(
            "expected_version: the object is at version {actual}, not {expected}; fetch it and retry"
        )));
    }
    Ok(())
}

#[tonic::async_trait]
impl v1::webhook_service_server::WebhookService for RegistryApi {
    async fn create_webhook(
        &self,
        request: Request<v1::CreateWebhookRequest>,
    ) -> Result<Response<v1::CreateWebhookResponse>, Status> {
        let p = Principal::of(&request);
        let req = request.into_inner();
        let wire = req.webhook.ok_or_else(|| Status::invalid_argument("webhook: is required"))?;
        let now = Utc::now();
        let unset = content_type_unset(&wire);
        let mut w = convert::webhook_from_proto(wire, now).map_err(invalid)?;
        w.tenant_id = p.owner(&w.tenant_id)?;
        self.adopt_template_content_type(&mut w, unset);
        if w.id.is_empty() {
            w.id = new_id("wh");
        } else if self.registry.webhook(&w.id).is_some() {
            return Err(Status::already_exists(format!("id: webhook `{}` already exists", w.id)));
        }
        w.enabled = !req.disabled;
        w.version = 1;
        w.created_at = now;
        w.updated_at = now;
        w.secrets.clear();
        let (secret, public_key) = ensure_secrets(&mut w, now);
        self.check_webhook(&w)?;
        let saved = self.registry.put_webhook(w, 0).await.map_err(write_error)?;
        tracing::info!(webhook = %saved.id, tenant = %saved.tenant_id, "webhook created");
        Ok(Response::new(v1::CreateWebhookResponse {
            webhook: Some(convert::webhook_to_proto(&saved)),
            secret,
            public_key,
        }))
    }

    async fn get_webhook(&self, request: Request<v1::GetWebhookRequest>) -> Result<Response<v1::Webhook>, Status> {
        let p = Principal::of(&request);
        let w = self.webhook(&p, &request.into_inner().id)?;
        Ok(Response::new(convert::webhook_to_proto(&w)))
    }

    async fn list_webhooks(
        &self,
        request: Request<v1::ListWebhooksRequest>,
    ) -> Result<Response<v1::ListWebhooksResponse>, Status> {
        let tenant = Principal::of(&request).scope(&request.get_ref().tenant_id)?;
        let req = request.into_inner();
        let snapshot = self.registry.snapshot();
        let mut hooks: Vec<&Arc<Webhook>> = snapshot
            .webhooks
            .values()
            .filter(|w| tenant.as_ref().is_none_or(|t| w.tenant_id == *t))
            .filter(|w| req.after.is_empty() || w.id > req.after)
            .collect();
        hooks.sort_by(|a, b| a.id.cmp(&b.id));
        let limit = if req.limit == 0 { 1000 } else { req.limit as usize };
        let next = if hooks.len() > limit { hooks[limit - 1].id.clone() } else { String::new() };
        hooks.truncate(limit);
        Ok(Response::new(v1::ListWebhooksResponse {
            webhooks: hooks.into_iter().map(|w| convert::webhook_to_proto(w)).collect(),
            next,
        }))
    }

    async fn update_webhook(
        &self,
        request: Request<v1::UpdateWebhookRequest>,
    ) -> Result<Response<v1::Webhook>, Status> {
        let p = Principal::of(&request);
        let req = request.into_inner();
        let wire = req.webhook.ok_or_else(|| Status::invalid_argument("webhook: is required"))?;
        let current = self.webhook(&p, &wire.id)?;
        check_version(req.expected_version, current.version)?;
        if !wire.tenant_id.is_empty() && wire.tenant_id != current.tenant_id {
            return Err(Status::invalid_argument("tenant_id: a webhook cannot move to another tenant"));
        }
        let now = Utc::now();
        let unset = content_type_unset(&wire);
        let schemes_unset = wire.signature_schemes.is_empty();
        let mut w = convert::webhook_from_proto(wire, now).map_err(invalid)?;
        w.tenant_id = current.tenant_id.clone();
        self.adopt_template_content_type(&mut w, unset);
        w.secrets = current.secrets.clone();
        if schemes_unset {
            w.signature_schemes = current.signature_schemes.clone();
        }
        // A scheme switched on gets a key (a v1a public key shows in the answer; a v1 secret
        // made here is shown by the next RotateSecret). Keys of a scheme switched off stay
        // stored, unused, so switching it back on restores what receivers already know.
        ensure_secrets(&mut w, now);
        w.created_at = current.created_at;
        w.updated_at = now;
        w.version = current.version + 1;
        self.check_webhook(&w)?;
        let saved = self.registry.put_webhook(w, current.version).await.map_err(write_error)?;
        Ok(Response::new(convert::webhook_to_proto(&saved)))
    }

    async fn delete_webhook(
        &self,
        request: Request<v1::DeleteWebhookRequest>,
    ) -> Result<Response<v1::DeleteWebhookResponse>, Status> {
        let p = Principal::of(&request);
        let req = request.into_inner();
        let current = self.webhook(&p, &req.id)?;
        check_version(req.expected_version, current.version)?;
        self.registry
            .delete_webhook(&req.id)
            .await
            .map_err(|e| hookmesh_proto::status::backend(&e, e.is_retriable()))?;
        Ok(Response::new(v1::DeleteWebhookResponse {}))
    }

    async fn enable_webhook(&self, request: Request<v1::SetEnabledRequest>) -> Result<Response<v1::Webhook>, Status> {
        let p = Principal::of(&request);
        self.set_enabled(&p, &request.into_inner().id, true).await
    }

    async fn disable_webhook(&self, request: Request<v1::SetEnabledRequest>) -> Result<Response<v1::Webhook>, Status> {
        let p = Principal::of(&request);
        self.set_enabled(&p, &request.into_inner().id, false).await
    }

    async fn rotate_secret(
        &self,
        request: Request<v1::RotateSecretRequest>,
    ) -> Result<Response<v1::RotateSecretResponse>, Status> {
        let p = Principal::of(&request);
        let req = request.into_inner();
        let current = self.webhook(&p, &req.id)?;
        let now = Utc::now();
        let grace = req.grace_secs.map_or(DEFAULT_ROTATION_GRACE, Duration::from_secs);
        if grace > MAX_ROTATION_GRACE {
            return Err(Status::invalid_argument("grace_secs: must be at most 30 days"));
        }
        let retire_at = now + chrono::Duration::from_std(grace).unwrap_or(chrono::Duration::days(1));
        let schemes = match req.scheme.trim() {
            "" => current.signature_schemes.clone(),
            name => {
                let s = SignatureScheme::parse(name).ok_or_else(|| {
                    Status::invalid_argument(format!(
                        "scheme: unknown scheme `{}` (v1, v1a)",
                        hookmesh_core::error::escape_control(name)
                    ))
                })?;
                if !current.signature_schemes.contains(&s) {
                    return Err(Status::invalid_argument(format!(
                        "scheme: `{}` is not one of this webhook's signature_schemes",
                        s.as_str()
                    )));
                }
                vec![s]
            }
        };
        let mut w = (*current).clone();
        for s in &mut w.secrets {
            if schemes.contains(&SignatureScheme::of_secret(&s.secret)) && s.expires_at.is_none_or(|e| e > retire_at) {
                s.expires_at = Some(retire_at);
            }
        }
        // Secrets past their grace period are gone for good.
        w.secrets.retain(|s| s.expires_at.is_none_or(|e| e > now));
        let (secret, public_key) = ensure_secrets(&mut w, now);
        w.version = current.version + 1;
        w.updated_at = now;
        let saved = self.registry.put_webhook(w, current.version).await.map_err(write_error)?;
        Ok(Response::new(v1::RotateSecretResponse {
            webhook: Some(convert::webhook_to_proto(&saved)),
            secret,
            public_key,
        }))
    }
}

#[tonic::async_trait]
impl v1::template_service_server::TemplateService for RegistryApi {
    async fn create_template(
        &self,
        request: Request<v1::CreateTemplateRequest>,
    ) -> Result<Response<v1::Template>, Status> {
        let p = Principal::of(&request);
        let wire = request.into_inner().template.ok_or_else(|| Status::invalid_argument("template: is required"))?;
        let now = Utc::now();
        let mut t = convert::template_from_proto(wire, now).map_err(invalid)?;
        t.tenant_id = p.owner(&t.tenant_id)?;
        if t.id.is_empty() {
            t.id = new_id("tpl");
        } else if self.registry.template(&t.id).is_some() {
            return Err(Status::already_exists(format!("id: template `{}` already exists", t.id)));
        }
        t.version = 1;
        t.created_at = now;
        t.updated_at = now;
        self.check_template(&t)?;
        let saved = self.registry.put_template(t, 0).await.map_err(write_error)?;
        Ok(Response::new(convert::template_to_proto(&saved)))
    }

    async fn get_template(&self, request: Request<v1::GetTemplateRequest>) -> Result<Response<v1::Template>, Status> {
        let p = Principal::of(&request);
        let t = self.template(&p, &request.into_inner().id)?;
        Ok(Response::new(convert::template_to_proto(&t)))
    }

    async fn list_templates(
        &self,
        request: Request<v1::ListTemplatesRequest>,
    ) -> Result<Response<v1::ListTemplatesResponse>, Status> {
        let tenant = Principal::of(&request).scope(&request.get_ref().tenant_id)?;
        let req = request.into_inner();
        let snapshot = self.registry.snapshot();
        let mut list: Vec<&Arc<Template>> = snapshot
            .templates
            .values()
            .filter(|t| tenant.as_ref().is_none_or(|x| t.tenant_id == *x))
            .filter(|t| req.group.is_empty() || t.group == req.group)
            .collect();
        list.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(Response::new(v1::ListTemplatesResponse {
            templates: list.into_iter().map(|t| convert::template_to_proto(t)).collect(),
        }))
    }

    async fn update_template(
        &self,
        request: Request<v1::UpdateTemplateRequest>,
    ) -> Result<Response<v1::Template>, Status> {
        let p = Principal::of(&request);
        let req = request.into_inner();
        let wire = req.template.ok_or_else(|| Status::invalid_argument("template: is required"))?;
        let current = self.template(&p, &wire.id)?;
        check_version(req.expected_version, current.version)?;
        if !wire.tenant_id.is_empty() && wire.tenant_id != current.tenant_id {
            return Err(Status::invalid_argument("tenant_id: a template cannot move to another tenant"));
        }
        let now = Utc::now();
        let mut t = convert::template_from_proto(wire, now).map_err(invalid)?;
        t.tenant_id = current.tenant_id.clone();
        t.created_at = current.created_at;
        t.updated_at = now;
        t.version = current.version + 1;
        self.check_template(&t)?;
        // Every webhook using the template must still compile with the new version.
        for w in self.registry.snapshot().webhooks.values() {
            if w.request.template_id.as_deref() == Some(t.id.as_str()) {
                check_template_content_type(w, &t)
                    .and_then(|()| CompiledWebhook::compile(w.clone(), Some(&t)).map(|_| ()))
                    .map_err(|e| Status::failed_precondition(format!("webhook `{}` would break: {e}", w.id)))?;
            }
        }
        let saved = self.registry.put_template(t, current.version).await.map_err(write_error)?;
        Ok(Response::new(convert::template_to_proto(&saved)))
    }

    async fn delete_template(
        &self,
        request: Request<v1::DeleteTemplateRequest>,
    ) -> Result<Response<v1::DeleteTemplateResponse>, Status> {
        let p = Principal::of(&request);
        let req = request.into_inner();
        let current = self.template(&p, &req.id)?;
        check_version(req.expected_version, current.version)?;
        if let Some(w) = self
            .registry
            .snapshot()
            .webhooks
            .values()
            .find(|w| w.request.template_id.as_deref() == Some(req.id.as_str()))
        {
            return Err(Status::failed_precondition(format!("template `{}` is used by webhook `{}`", req.id, w.id)));
        }
        self.registry
            .delete_template(&req.id)
            .await
            .map_err(|e| hookmesh_proto::status::backend(&e, e.is_retriable()))?;
        Ok(Response::new(v1::DeleteTemplateResponse {}))
    }

    async fn extract_fields(
        &self,
        request: Request<v1::ExtractFieldsRequest>,
    ) -> Result<Response<v1::ExtractFieldsResponse>, Status> {
        let req = request.into_inner();
        let format = ContentType::parse(&req.format).ok_or_else(|| {
            Status::invalid_argument(format!(
                "format: `{}` is not json or xml",
                hookmesh_core::error::escape_control(&req.format)
            ))
        })?;
        let fields = extract_fields(format, &req.example).map_err(invalid)?;
        Ok(Response::new(v1::ExtractFieldsResponse {
            fields: fields.iter().map(convert::field_mapping_to_proto).collect(),
        }))
    }

    async fn list_tokens(&self, _: Request<v1::ListTokensRequest>) -> Result<Response<v1::ListTokensResponse>, Status> {
        Ok(Response::new(convert::tokens_to_proto()))
    }
}

#[tonic::async_trait]
impl v1::tenant_service_server::TenantService for RegistryApi {
    async fn get_tenant_settings(
        &self,
        request: Request<v1::GetTenantSettingsRequest>,
    ) -> Result<Response<v1::TenantSettings>, Status> {
        let p = Principal::of(&request);
        let tenant = p.owner(&request.get_ref().tenant_id)?;
        Ok(Response::new(convert::tenant_settings_to_proto(&self.registry.tenant_settings(&tenant))))
    }

    async fn update_tenant_settings(
        &self,
        request: Request<v1::UpdateTenantSettingsRequest>,
    ) -> Result<Response<v1::TenantSettings>, Status> {
        let p = Principal::of(&request);
        let req = request.into_inner();
        let wire = req.settings.ok_or_else(|| Status::invalid_argument("settings: is required"))?;
        let tenant =
            p.owner(&wire.tenant_id).map_err(|s| Status::new(s.code(), format!("settings.{}", s.message())))?;
        let current = self.registry.tenant_settings(&tenant);
        check_version(req.expected_version, current.version)?;
        let mut next = convert::tenant_settings_from_proto(wire);
        next.tenant_id = tenant;
        next.version = current.version + 1;
        next.updated_at = Utc::now();
        next.validate().map_err(|e| invalid(e.under("settings")))?;
        let saved = self.registry.put_tenant_settings(next, current.version).await.map_err(write_error)?;
        Ok(Response::new(convert::tenant_settings_to_proto(&saved)))
    }

    async fn create_portal_link(
        &self,
        request: Request<v1::CreatePortalLinkRequest>,
    ) -> Result<Response<v1::CreatePortalLinkResponse>, Status> {
        if Principal::of(&request) != Principal::Operator {
            return Err(Status::permission_denied("portal links are issued with an operator token"));
        }
        // The interceptor hands over the key it checks portal tokens with; without it (a
        // server mounted without the authenticator) no link could ever be accepted.
        let key = request
            .extensions()
            .get::<hookmesh_proto::auth::PortalKey>()
            .cloned()
            .ok_or_else(|| Status::failed_precondition("portal links need the API's authenticator"))?;
        let req = request.into_inner();
        let ttl = std::time::Duration::from_secs(if req.ttl_secs == 0 { 3600 } else { req.ttl_secs });
        let (token, exp) = key.issue(&req.tenant_id, ttl).map_err(Status::invalid_argument)?;
        let expires_at = chrono::DateTime::from_timestamp(exp as i64, 0)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
            .unwrap_or_default();
        Ok(Response::new(v1::CreatePortalLinkResponse { token, expires_at }))
    }
}
