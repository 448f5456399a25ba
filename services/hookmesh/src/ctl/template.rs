//! `ctl template`: create, get, list, update, delete templates, and `extract`, the fields of
//! an example document with the source each would get. `update` works as webhooks' does: the
//! flags onto the fetched definition, sent with the fetched version as the expected version.

use crate::ctl::body::{apply_body, body_kind_name, BodyInput, BodyKind};
use crate::ctl::output::{describe, or_dash, out, out_json, source_str, table};
use crate::ctl::parse::{format_from_path, read_text};
use crate::ctl::{print_deleted, read_document, update_base, Ctx};
use anyhow::{anyhow, bail, Result};
use chrono::Utc;
use clap::{Args, Subcommand};
use hookmesh_client::Answer;
use hookmesh_proto::convert;
use hookmesh_proto::v1;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

#[derive(Subcommand, Debug)]
pub enum TemplateCmd {
    /// Create a template.
    Create(TemplateFlags),
    /// Show one template.
    Get { id: String },
    /// List templates.
    List {
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long)]
        group: Option<String>,
    },
    /// Change a template: the flags are applied onto the current definition.
    Update {
        id: String,
        #[command(flatten)]
        flags: TemplateFlags,
        /// Default: the version just fetched; 0 = don't check.
        #[arg(long)]
        expected_version: Option<u64>,
    },
    /// Delete a template.
    Delete {
        id: String,
        #[arg(long, default_value_t = 0)]
        expected_version: u64,
    },
    /// List the fields of an example document and the source each would get.
    Extract {
        /// json or xml (default: from the file name).
        #[arg(long)]
        format: Option<String>,
        #[arg(long)]
        example_file: PathBuf,
    },
}

#[derive(Args, Debug, Default)]
pub struct TemplateFlags {
    /// A template as JSON (hookmesh-core's `Template` shape, timestamps optional); the other
    /// flags are applied on top.
    #[arg(long)]
    pub file: Option<PathBuf>,
    /// Choose the id (default: generated).
    #[arg(long = "id", value_name = "ID")]
    pub set_id: Option<String>,
    #[arg(long)]
    pub tenant: Option<String>,
    #[arg(long)]
    pub name: Option<String>,
    /// Template group (default "default").
    #[arg(long)]
    pub group: Option<String>,
    #[arg(long)]
    pub description: Option<String>,
    /// json (default), xml, form, text.
    #[arg(long)]
    pub content_type: Option<String>,
    /// fields (with --example-file), pairs (with --map), text (with --source-file).
    #[arg(long, value_enum)]
    pub kind: Option<BodyKind>,
    /// Example document of a fields template.
    #[arg(long, conflicts_with = "source_file")]
    pub example_file: Option<PathBuf>,
    /// Source of a text template.
    #[arg(long)]
    pub source_file: Option<PathBuf>,
    /// Format of the example: json or xml (default: from the file name).
    #[arg(long)]
    pub format: Option<String>,
    /// Field mapping 'path=token:NAME' | 'path=const:JSON' | 'path=name' (repeatable).
    #[arg(long = "map", value_name = "PATH=SOURCE")]
    pub maps: Vec<String>,
}

fn template_from_file(path: &Path) -> Result<v1::Template> {
    let t: hookmesh_core::webhook::Template = read_document(path, "template", &[])?;
    let mut p = convert::template_to_proto(&t);
    p.created_at.clear();
    p.updated_at.clear();
    p.version = 0;
    Ok(p)
}

fn apply_template_flags(t: &mut v1::Template, f: &TemplateFlags) -> Result<()> {
    let set = |dst: &mut String, src: &Option<String>| {
        if let Some(s) = src {
            *dst = s.clone();
        }
    };
    set(&mut t.id, &f.set_id);
    set(&mut t.tenant_id, &f.tenant);
    set(&mut t.name, &f.name);
    set(&mut t.group, &f.group);
    set(&mut t.description, &f.description);
    set(&mut t.content_type, &f.content_type);
    let file = match (&f.example_file, &f.source_file) {
        (Some(p), _) => Some((p.as_path(), read_text(p)?)),
        (None, Some(p)) => Some((p.as_path(), read_text(p)?)),
        (None, None) => None,
    };
    let kind = f.kind.or(match (&f.example_file, &f.source_file) {
        (Some(_), _) => Some(BodyKind::Fields),
        (None, Some(_)) => Some(BodyKind::Text),
        (None, None) => None,
    });
    if kind == Some(BodyKind::Fields) && f.source_file.is_some() {
        bail!("a fields template takes --example-file, not --source-file");
    }
    if kind == Some(BodyKind::Text) && f.example_file.is_some() {
        bail!("a text template takes --source-file, not --example-file");
    }
    t.body = apply_body(t.body.take(), BodyInput { kind, file, format: f.format.as_deref(), maps: &f.maps })?;
    Ok(())
}

fn mapping_json(m: &v1::FieldMapping) -> Value {
    match convert::field_mapping_from_proto(m.clone(), "field") {
        Ok(d) => serde_json::to_value(d).unwrap_or(Value::Null),
        Err(_) => json!({"path": m.path, "source": null}),
    }
}

fn template_json(t: &v1::Template) -> Result<Value> {
    let domain = convert::template_from_proto(t.clone(), Utc::now())
        .map_err(|e| anyhow!("the server sent a template this client cannot read: {e}"))?;
    Ok(serde_json::to_value(&domain)?)
}

fn describe_template(t: &v1::Template) -> String {
    let mut text = describe(&[
        ("id", t.id.clone()),
        ("tenant", t.tenant_id.clone()),
        ("group", t.group.clone()),
        ("name", t.name.clone()),
        ("description", t.description.clone()),
        ("content type", or_dash(&t.content_type)),
        ("kind", body_kind_name(&t.body).to_string()),
        ("version", t.version.to_string()),
        ("created", t.created_at.clone()),
        ("updated", t.updated_at.clone()),
    ]);
    use v1::template_body::Kind;
    let mappings = |list: &[v1::FieldMapping]| {
        let rows: Vec<Vec<String>> = list.iter().map(|m| vec![m.path.clone(), source_str(&m.source)]).collect();
        table(&["PATH", "SOURCE"], &rows)
    };
    match t.body.as_ref().and_then(|b| b.kind.as_ref()) {
        Some(Kind::Fields(f)) => {
            text.push_str(&format!("\nexample ({}):\n{}\n", or_dash(&f.format), f.example.trim_end()));
            if !f.fields.is_empty() {
                text.push('\n');
                text.push_str(&mappings(&f.fields));
            }
        }
        Some(Kind::Pairs(p)) => {
            text.push('\n');
            text.push_str(&mappings(&p.pairs));
        }
        Some(Kind::Text(s)) => text.push_str(&format!("\nsource:\n{}\n", s.trim_end())),
        None => {}
    }
    text
}

fn print_template(ctx: &Ctx, t: &v1::Template) -> Result<()> {
    if ctx.json {
        out_json(&template_json(t)?);
    } else {
        out(&describe_template(t));
    }
    Ok(())
}

pub(super) async fn run(ctx: &Ctx, cmd: TemplateCmd) -> Result<()> {
    match cmd {
        TemplateCmd::Create(flags) => {
            let mut t = match &flags.file {
                Some(path) => template_from_file(path)?,
                None => v1::Template::default(),
            };
            apply_template_flags(&mut t, &flags)?;
            if t.tenant_id.trim().is_empty() {
                bail!("--tenant is required");
            }
            if t.name.trim().is_empty() {
                bail!("--name is required");
            }
            if t.body.as_ref().and_then(|b| b.kind.as_ref()).is_none() {
                bail!("a body is required: --kind fields --example-file F, --kind text --source-file F, or --kind pairs --map 'name=token:NAME'");
            }
            let t =
                ctx.templates().create_template(v1::CreateTemplateRequest { template: Some(t) }).await.answer(ctx)?;
            print_template(ctx, &t)
        }
        TemplateCmd::Get { id } => {
            let t = ctx.templates().get_template(v1::GetTemplateRequest { id }).await.answer(ctx)?;
            print_template(ctx, &t)
        }
        TemplateCmd::List { tenant, group } => {
            let resp = ctx
                .templates()
                .list_templates(v1::ListTemplatesRequest {
                    tenant_id: tenant.unwrap_or_default(),
                    group: group.unwrap_or_default(),
                })
                .await
                .answer(ctx)?;
            if ctx.json {
                let list = resp.templates.iter().map(template_json).collect::<Result<Vec<_>>>()?;
                out_json(&json!({"templates": list}));
            } else {
                let rows: Vec<Vec<String>> = resp
                    .templates
                    .iter()
                    .map(|t| {
                        vec![
                            t.id.clone(),
                            t.tenant_id.clone(),
                            t.group.clone(),
                            t.name.clone(),
                            or_dash(&t.content_type),
                            body_kind_name(&t.body).to_string(),
                            t.version.to_string(),
                        ]
                    })
                    .collect();
                out(&table(&["ID", "TENANT", "GROUP", "NAME", "TYPE", "KIND", "VERSION"], &rows));
            }
            Ok(())
        }
        TemplateCmd::Update { id, flags, expected_version } => {
            let current = ctx.templates().get_template(v1::GetTemplateRequest { id: id.clone() }).await.answer(ctx)?;
            let ids = (id.as_str(), flags.set_id.as_deref());
            let mut t = update_base("template", ids, &current, flags.file.as_deref(), template_from_file)?;
            apply_template_flags(&mut t, &flags)?;
            let expected_version = expected_version.unwrap_or(current.version);
            let t = ctx
                .templates()
                .update_template(v1::UpdateTemplateRequest { template: Some(t), expected_version })
                .await
                .answer(ctx)?;
            print_template(ctx, &t)
        }
        TemplateCmd::Delete { id, expected_version } => {
            ctx.templates()
                .delete_template(v1::DeleteTemplateRequest { id: id.clone(), expected_version })
                .await
                .answer(ctx)?;
            print_deleted(ctx, "template", &id);
            Ok(())
        }
        TemplateCmd::Extract { format, example_file } => {
            let example = read_text(&example_file)?;
            let format = match format.or_else(|| format_from_path(&example_file).map(str::to_string)) {
                Some(f) => f,
                None => bail!("--format (json or xml) is required for {}", example_file.display()),
            };
            let resp =
                ctx.templates().extract_fields(v1::ExtractFieldsRequest { format, example }).await.answer(ctx)?;
            if ctx.json {
                out_json(&json!({"fields": resp.fields.iter().map(mapping_json).collect::<Vec<_>>()}));
            } else {
                let rows: Vec<Vec<String>> =
                    resp.fields.iter().map(|m| vec![m.path.clone(), source_str(&m.source)]).collect();
                out(&table(&["PATH", "SOURCE"], &rows));
            }
            Ok(())
        }
    }
}
