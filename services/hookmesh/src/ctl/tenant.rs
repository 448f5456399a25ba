//! `ctl tenant`: show and set a tenant's settings (masking of personal data in stored delivery
//! logs).

use crate::ctl::output::{describe, opt_str, or_dash, out, out_json};
use crate::ctl::Ctx;
use anyhow::Result;
use clap::Subcommand;
use hookmesh_client::Answer;
use hookmesh_proto::v1;
use serde_json::json;

#[derive(Subcommand, Debug)]
pub enum TenantCmd {
    /// The tenant's settings (a tenant token's own tenant when `--tenant` is left out).
    Show {
        #[arg(long, default_value = "")]
        tenant: String,
    },
    /// Changes the tenant's settings; unnamed settings keep their value.
    Set {
        #[arg(long, default_value = "")]
        tenant: String,
        /// Mask caller phone numbers and other personal fields in stored delivery logs.
        #[arg(long)]
        mask_personal_data: Option<bool>,
        /// Field masked in addition to the built-in personal tokens (repeatable; replaces the
        /// list).
        #[arg(long = "mask-field")]
        mask_fields: Vec<String>,
        /// Empties the list of extra masked fields.
        #[arg(long, conflicts_with = "mask_fields")]
        clear_mask_fields: bool,
    },
}

pub(super) async fn run(ctx: &Ctx, cmd: TenantCmd) -> Result<()> {
    let t = match cmd {
        TenantCmd::Show { tenant } => {
            ctx.tenants().get_tenant_settings(v1::GetTenantSettingsRequest { tenant_id: tenant }).await.answer(ctx)?
        }
        TenantCmd::Set { tenant, mask_personal_data, mask_fields, clear_mask_fields } => {
            let mut t = ctx
                .tenants()
                .get_tenant_settings(v1::GetTenantSettingsRequest { tenant_id: tenant })
                .await
                .answer(ctx)?;
            if let Some(on) = mask_personal_data {
                t.mask_personal_data = on;
            }
            if clear_mask_fields {
                t.mask_fields.clear();
            } else if !mask_fields.is_empty() {
                t.mask_fields = mask_fields;
            }
            let expected_version = t.version;
            ctx.tenants()
                .update_tenant_settings(v1::UpdateTenantSettingsRequest { settings: Some(t), expected_version })
                .await
                .answer(ctx)?
        }
    };
    if ctx.json {
        out_json(&json!({
            "tenant_id": t.tenant_id,
            "mask_personal_data": t.mask_personal_data,
            "mask_fields": t.mask_fields,
            "personal_tokens": t.personal_tokens,
            "version": t.version,
            "updated_at": opt_str(&t.updated_at),
        }));
        return Ok(());
    }
    out(&describe(&[
        ("tenant", t.tenant_id.clone()),
        ("mask personal data", if t.mask_personal_data { "yes".into() } else { "no".into() }),
        ("extra masked fields", if t.mask_fields.is_empty() { "-".into() } else { t.mask_fields.join(", ") }),
        ("built-in personal", t.personal_tokens.join(", ")),
        ("version", t.version.to_string()),
        ("updated", or_dash(&t.updated_at)),
    ]));
    Ok(())
}
