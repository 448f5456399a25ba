//! The management client of hookmesh: one authenticated gRPC connection to a running hookmesh,
//! shared by `hookmesh ctl` and `hookmesh simulate` (and any later tool that drives the API,
//! such as a web console).
//!
//! - [`Client::connect`] takes the address as people type it (`127.0.0.1:7600` or a URL; the
//!   tools read it from `--addr` / `HOOKMESH_ADDR`, see [`ConnectArgs`]), connects, and sends
//!   the bearer token on every call ([`BearerToken`]).
//! - One accessor per service ([`Client::webhooks`], [`Client::templates`], …): the generated
//!   tonic client over the shared channel.
//! - [`Answer::answer`] turns a call's result into its message or an [`Error`] that reads as one
//!   line: `not found: webhook wh_1`, or `cannot reach hookmesh at <addr>: …` when the call
//!   never reached the server.
//! - [`one_line`] writes an error and its causes on one line, each said once; every `hookmesh`
//!   subcommand reports its error that way.

mod auth;
mod error;

pub use auth::BearerToken;
pub use error::{code_name, error_chain, one_line, Answer, Error};

use hookmesh_proto::v1::delivery_service_client::DeliveryServiceClient;
use hookmesh_proto::v1::ingest_service_client::IngestServiceClient;
use hookmesh_proto::v1::render_service_client::RenderServiceClient;
use hookmesh_proto::v1::template_service_client::TemplateServiceClient;
use hookmesh_proto::v1::tenant_service_client::TenantServiceClient;
use hookmesh_proto::v1::webhook_service_client::WebhookServiceClient;
use std::time::Duration;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

/// Where the tools look for hookmesh when neither `--addr` nor `HOOKMESH_ADDR` says.
pub const DEFAULT_ADDR: &str = "http://127.0.0.1:7600";
/// The environment variable of the address.
pub const ADDR_ENV: &str = "HOOKMESH_ADDR";
/// The environment variable of the bearer token.
pub const TOKEN_ENV: &str = "HOOKMESH_TOKEN";

/// How long connecting may take before the server counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The channel every service client of a [`Client`] sends over: the connection with the
/// bearer token added to each call.
pub type AuthChannel = InterceptedService<Channel, BearerToken>;

/// The connection flags of a tool that talks to hookmesh: `--addr` and `--token`, with their
/// environment variables.
#[derive(clap::Args, Debug, Clone)]
pub struct ConnectArgs {
    /// Address of the hookmesh management API (`host:port` or a URL).
    #[arg(long, env = ADDR_ENV, default_value = DEFAULT_ADDR, global = true)]
    pub addr: String,
    /// Bearer token sent as `authorization: Bearer <token>` on every call.
    #[arg(long, env = TOKEN_ENV, global = true, hide_env_values = true)]
    pub token: Option<String>,
}

impl ConnectArgs {
    pub async fn connect(&self) -> Result<Client, Error> {
        Client::connect(&self.addr, self.token.as_deref()).await
    }
}

/// A connection to hookmesh's gRPC API. Cloning shares the connection.
#[derive(Clone, Debug)]
pub struct Client {
    channel: Channel,
    auth: BearerToken,
    addr: String,
    /// Services served elsewhere than `addr` (a distributed deployment without one endpoint
    /// that routes by gRPC path): service name (`DeliveryService`) → its connection.
    routes: std::sync::Arc<std::collections::HashMap<String, Channel>>,
}

/// The services a [`Client`] talks to, as [`Client::with_route`] names them.
pub const SERVICES: &[&str] =
    &["WebhookService", "TemplateService", "TenantService", "RenderService", "DeliveryService", "IngestService"];

/// `host:port` as `http://host:port`; an address with a scheme stays as it is.
pub fn normalise_addr(addr: &str) -> String {
    let addr = addr.trim();
    if addr.contains("://") {
        addr.to_string()
    } else {
        format!("http://{addr}")
    }
}

impl Client {
    /// Connects to `addr` ([`normalise_addr`]); `token`, when given and not blank, is sent on
    /// every call. Fails fast when nothing answers at the address.
    pub async fn connect(addr: &str, token: Option<&str>) -> Result<Client, Error> {
        let addr = normalise_addr(addr);
        let endpoint = Endpoint::from_shared(addr.clone())
            .map_err(|e| Error::InvalidAddress { addr: addr.clone(), reason: e.to_string() })?
            .connect_timeout(CONNECT_TIMEOUT);
        let auth = BearerToken::new(token)?;
        let channel =
            endpoint.connect().await.map_err(|e| Error::Unreachable { addr: addr.clone(), cause: error_chain(&e) })?;
        Ok(Client { channel, auth, addr, routes: Default::default() })
    }

    /// Like [`Client::connect`], but connects on the first call (and reconnects after a
    /// failure) instead of now: for a long-running client, such as the web console, that may
    /// start before the API does.
    pub fn connect_lazy(addr: &str, token: Option<&str>) -> Result<Client, Error> {
        let addr = normalise_addr(addr);
        let endpoint = Endpoint::from_shared(addr.clone())
            .map_err(|e| Error::InvalidAddress { addr: addr.clone(), reason: e.to_string() })?
            .connect_timeout(CONNECT_TIMEOUT);
        let auth = BearerToken::new(token)?;
        Ok(Client { channel: endpoint.connect_lazy(), auth, addr, routes: Default::default() })
    }

    /// Sends the calls of `service` (one of [`SERVICES`]) to `addr` instead, connecting on
    /// first use: the stages of a distributed deployment each serve their own services.
    pub fn with_route(mut self, service: &str, addr: &str) -> Result<Client, Error> {
        if !SERVICES.contains(&service) {
            return Err(Error::InvalidAddress {
                addr: format!("{service}={addr}"),
                reason: format!("`{service}` is not one of {}", SERVICES.join(", ")),
            });
        }
        let addr = normalise_addr(addr);
        let endpoint = Endpoint::from_shared(addr.clone())
            .map_err(|e| Error::InvalidAddress { addr: addr.clone(), reason: e.to_string() })?
            .connect_timeout(CONNECT_TIMEOUT);
        std::sync::Arc::make_mut(&mut self.routes).insert(service.to_string(), endpoint.connect_lazy());
        Ok(self)
    }

    /// The same connection sending another bearer token (`None`: none): one connection shared
    /// by the many signed-in users of a web console.
    pub fn with_token(&self, token: Option<&str>) -> Result<Client, Error> {
        Ok(Client {
            channel: self.channel.clone(),
            auth: BearerToken::new(token)?,
            addr: self.addr.clone(),
            routes: self.routes.clone(),
        })
    }

    /// The address connected to, normalised.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    fn channel(&self, service: &str) -> AuthChannel {
        let channel = self.routes.get(service).unwrap_or(&self.channel);
        InterceptedService::new(channel.clone(), self.auth.clone())
    }

    /// Webhooks: create, read, change, delete, enable, rotate secrets.
    pub fn webhooks(&self) -> WebhookServiceClient<AuthChannel> {
        WebhookServiceClient::new(self.channel("WebhookService"))
    }

    /// Body templates, the token catalog and field extraction.
    pub fn templates(&self) -> TemplateServiceClient<AuthChannel> {
        TemplateServiceClient::new(self.channel("TemplateService"))
    }

    /// Tenant settings.
    pub fn tenants(&self) -> TenantServiceClient<AuthChannel> {
        TenantServiceClient::new(self.channel("TenantService"))
    }

    /// Previews of a webhook's or a template's rendering.
    pub fn render(&self) -> RenderServiceClient<AuthChannel> {
        RenderServiceClient::new(self.channel("RenderService"))
    }

    /// The delivery log, resends, test sends, recovery and endpoint health.
    pub fn deliveries(&self) -> DeliveryServiceClient<AuthChannel> {
        DeliveryServiceClient::new(self.channel("DeliveryService"))
    }

    /// Publishing events and the dead-letter queue.
    pub fn ingest(&self) -> IngestServiceClient<AuthChannel> {
        IngestServiceClient::new(self.channel("IngestService"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_without_a_scheme_are_http() {
        assert_eq!(normalise_addr("127.0.0.1:7600"), "http://127.0.0.1:7600");
        assert_eq!(normalise_addr("https://h:1"), "https://h:1");
        assert_eq!(normalise_addr(" h:1 "), "http://h:1");
    }

    #[tokio::test]
    async fn connecting_names_what_is_wrong() {
        let e = Client::connect("http://127.0.0.1:1", None).await.unwrap_err();
        assert!(matches!(e, Error::Unreachable { .. }), "{e:?}");
        let text = e.to_string();
        assert!(text.starts_with("cannot reach hookmesh at http://127.0.0.1:1: "), "{text}");
        assert!(!text.contains("transport error"), "{text}");
        let e = Client::connect("http://bad host", None).await.unwrap_err();
        assert!(e.to_string().starts_with("--addr `http://bad host` is not a valid address"), "{e}");
        let e = Client::connect("127.0.0.1:1", Some("line\nbreak")).await.unwrap_err();
        assert!(e.to_string().contains("--token"), "{e}");
    }
}
