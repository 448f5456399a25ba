//! `hookmesh console`: the web console and tenant portal as a process of its own, a client of
//! the management API at `--api`; and the same console mounted by `hookmesh standalone`
//! (`--console-addr`, on by default on loopback, `--no-console` turns it off).
//!
//! The console holds no API credential of its own: people sign in with an operator or tenant
//! token, or arrive through a portal link (`hookmesh ctl portal-link`), and every call carries
//! that token. See the `hookmesh-console` crate for sessions, CSRF and framing.

use anyhow::Context;
use hookmesh_console::ConsoleConfig;
use std::net::SocketAddr;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The console's default address: beside the API's 7600/7601, on loopback.
pub const DEFAULT_CONSOLE_ADDR: &str = "127.0.0.1:7700";

/// Flags of the console itself, shared by `hookmesh console` and `hookmesh standalone`.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ConsoleWebArgs {
    /// Origins allowed to frame the tenant portal (CSP frame-ancestors), comma-separated, e.g.
    /// https://app.example.com. Without any, no page may be framed.
    #[arg(long, env = "HOOKMESH_CONSOLE_FRAME_ORIGINS", value_delimiter = ',')]
    pub console_frame_origins: Vec<String>,
    /// Mark session cookies Secure: the console is reached over TLS (a proxy that sends
    /// `X-Forwarded-Proto: https` gets them anyway).
    #[arg(long, env = "HOOKMESH_CONSOLE_SECURE_COOKIES")]
    pub console_secure_cookies: bool,
    /// How long a signed-in session lasts (e.g. 12h, 30m).
    #[arg(long, env = "HOOKMESH_CONSOLE_SESSION_TTL", default_value = "12h", value_parser = humantime::parse_duration)]
    pub console_session_ttl: Duration,
}

impl ConsoleWebArgs {
    pub fn config(&self, api: String) -> anyhow::Result<ConsoleConfig> {
        let c = ConsoleConfig {
            api,
            api_routes: Vec::new(),
            frame_origins: self
                .console_frame_origins
                .iter()
                .map(|o| o.trim().to_string())
                .filter(|o| !o.is_empty())
                .collect(),
            secure_cookies: self.console_secure_cookies,
            session_ttl: if self.console_session_ttl.is_zero() {
                Duration::from_secs(12 * 3600)
            } else {
                self.console_session_ttl
            },
        };
        c.validate().map_err(|e| anyhow::anyhow!("console_{e}"))?;
        Ok(c)
    }
}

#[derive(clap::Args, Debug)]
pub struct ConsoleArgs {
    /// The management gRPC API the console is a client of (`host:port` or a URL).
    #[arg(long, env = "HOOKMESH_CONSOLE_API", default_value = hookmesh_client::DEFAULT_ADDR)]
    pub api: String,
    /// A service served elsewhere than --api, `Service=address` (repeatable; comma-separated
    /// in the environment), e.g. `DeliveryService=http://hookmesh-dispatcher:7600`: for a
    /// distributed deployment without one endpoint that routes by gRPC path.
    #[arg(long = "api-route", env = "HOOKMESH_CONSOLE_API_ROUTES", value_delimiter = ',')]
    pub api_routes: Vec<String>,
    /// Where the console listens.
    #[arg(long, env = "HOOKMESH_CONSOLE_ADDR", default_value = DEFAULT_CONSOLE_ADDR)]
    pub addr: SocketAddr,
    /// Log as JSON lines.
    #[arg(long, env = "HOOKMESH_LOG_JSON")]
    pub log_json: bool,
    #[command(flatten)]
    pub web: ConsoleWebArgs,
}

pub async fn run(args: ConsoleArgs) -> anyhow::Result<()> {
    hookmesh_telemetry::init_logging(args.log_json);
    let mut config = args.web.config(args.api.clone())?;
    for r in args.api_routes.iter().map(|r| r.trim()).filter(|r| !r.is_empty()) {
        let (service, addr) = r.split_once('=').ok_or_else(|| {
            anyhow::anyhow!(
                "--api-route `{r}`: expected Service=address, e.g. DeliveryService=http://hookmesh-dispatcher:7600"
            )
        })?;
        if !hookmesh_client::SERVICES.contains(&service.trim()) {
            anyhow::bail!("--api-route `{r}`: `{service}` is not one of {}", hookmesh_client::SERVICES.join(", "));
        }
        config.api_routes.push((service.trim().to_string(), addr.trim().to_string()));
    }
    let shutdown = CancellationToken::new();
    let (addr, server) = hookmesh_console::start(config, args.addr, shutdown.clone()).await?;
    tracing::info!(%addr, api = %args.api, "hookmesh console ready");
    println!("hookmesh console listening console=http://{addr} api={}", hookmesh_client::normalise_addr(&args.api));
    let mut server = server;
    tokio::select! {
        _ = crate::runtime::shutdown_signal() => {
            shutdown.cancel();
            let _ = tokio::time::timeout(Duration::from_secs(5), &mut server).await;
        }
        res = &mut server => res.context("console task")??,
    }
    Ok(())
}

/// The console of `hookmesh standalone`: where it listens (`None`: off) and its flags.
#[derive(Debug, Clone)]
pub struct StandaloneConsole {
    pub addr: SocketAddr,
    /// Given on the command line or in the environment: failing to bind it is an error. The
    /// default address in use only logs a warning (another hookmesh on this machine has it).
    pub explicit: bool,
    pub web: ConsoleWebArgs,
}

/// Starts the standalone's console as a client of its own API at `grpc`; answers where it
/// listens, or `None` when the default address was taken.
pub async fn start_in_process(
    c: &StandaloneConsole,
    grpc: SocketAddr,
    shutdown: CancellationToken,
) -> anyhow::Result<Option<SocketAddr>> {
    // A wildcard listen address is reached on loopback from inside the process.
    let api = if grpc.ip().is_unspecified() { SocketAddr::from(([127, 0, 0, 1], grpc.port())) } else { grpc };
    let config = c.web.config(format!("http://{api}"))?;
    match hookmesh_console::start(config, c.addr, shutdown).await {
        Ok((addr, task)) => {
            tokio::spawn(async move {
                if let Ok(Err(e)) = task.await {
                    tracing::warn!(error = %e, "console stopped with an error");
                }
            });
            Ok(Some(addr))
        }
        Err(e) if !c.explicit => {
            tracing::warn!(error = %e, "console not started (--console-addr picks another address, --no-console turns it off)");
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    #[derive(Parser)]
    struct Cli {
        #[command(subcommand)]
        cmd: Cmd,
    }

    #[derive(clap::Subcommand)]
    enum Cmd {
        Console(super::ConsoleArgs),
        Standalone(Box<crate::standalone::StandaloneArgs>),
    }

    #[test]
    fn console_flags_are_consistent() {
        Cli::command().debug_assert();
        let err = Cli::try_parse_from(["hookmesh", "standalone", "--no-console", "--console-addr", "127.0.0.1:1"]);
        assert!(err.is_err(), "--no-console and --console-addr together are refused");
        let Ok(Cli { cmd: Cmd::Console(a) }) = Cli::try_parse_from([
            "hookmesh",
            "console",
            "--api-route",
            "DeliveryService=http://d:7600",
            "--console-frame-origins",
            "https://app.example.com",
        ]) else {
            panic!("console flags parse")
        };
        assert_eq!(a.api_routes, ["DeliveryService=http://d:7600"]);
        let c = a.web.config(a.api).unwrap();
        assert_eq!(c.frame_origins, ["https://app.example.com"]);
        assert_eq!(c.session_ttl, std::time::Duration::from_secs(12 * 3600));
        let bad = super::ConsoleWebArgs { console_frame_origins: vec!["*".into()], ..Default::default() };
        assert!(bad.config("x".into()).unwrap_err().to_string().starts_with("console_frame_origins[0]"));
    }
}
