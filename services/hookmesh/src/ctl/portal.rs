//! `ctl portal-link`: a signed, expiring link that opens the web console scoped to one tenant
//! (what a platform embeds in its own customer UI). Operators only; the API signs it.

use crate::ctl::output::{out, out_json};
use crate::ctl::Ctx;
use anyhow::{bail, Result};
use hookmesh_client::Answer;
use hookmesh_proto::v1;
use serde_json::json;

#[derive(clap::Args, Debug)]
pub struct PortalLinkArgs {
    /// The tenant the portal is scoped to.
    #[arg(long)]
    pub tenant: String,
    /// How long the link opens the portal (e.g. 30m, 1h, 7d; at most 7 days).
    #[arg(long, default_value = "1h", value_parser = crate::ctl::parse::parse_secs)]
    pub ttl: u64,
    /// Where the console is served, as the tenant's browser reaches it.
    #[arg(long, env = "HOOKMESH_CONSOLE_URL", default_value = "http://127.0.0.1:7700")]
    pub console: String,
}

pub(super) async fn run(ctx: &Ctx, a: PortalLinkArgs) -> Result<()> {
    if a.ttl == 0 {
        bail!("--ttl: must be at least one second");
    }
    let resp = ctx
        .tenants()
        .create_portal_link(v1::CreatePortalLinkRequest { tenant_id: a.tenant.clone(), ttl_secs: a.ttl })
        .await
        .answer(ctx)?;
    let url = format!("{}/portal?token={}", a.console.trim_end_matches('/'), resp.token);
    if ctx.json {
        out_json(&json!({ "tenant_id": a.tenant, "url": url, "expires_at": resp.expires_at }));
    } else {
        out(&url);
    }
    Ok(())
}
