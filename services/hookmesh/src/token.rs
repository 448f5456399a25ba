//! `hookmesh token`: make and hash management API tokens. The server is configured with the
//! hashes only (`HOOKMESH_TOKENS`), so a leaked configuration does not leak a token.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hookmesh_proto::auth::hash_token;
use rand::RngCore;

#[derive(clap::Subcommand, Debug)]
pub enum TokenCmd {
    /// Make a new random token and print it with its configuration entry.
    New {
        /// A token for one tenant (default: an operator token that sees every tenant).
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Make a new master key for encrypting signing secrets at rest (HOOKMESH_MASTER_KEY).
    MasterKey,
    /// Print the configuration entry of an existing token.
    Hash {
        token: String,
        #[arg(long)]
        tenant: Option<String>,
    },
}

fn entry(token: &str, tenant: &Option<String>) -> String {
    match tenant {
        Some(t) => format!("sha256:{}=tenant:{t}", hash_token(token)),
        None => format!("sha256:{}=operator", hash_token(token)),
    }
}

pub fn run(cmd: TokenCmd) -> anyhow::Result<()> {
    match cmd {
        TokenCmd::New { tenant } => {
            let mut bytes = [0u8; 32];
            rand::rng().fill_bytes(&mut bytes);
            let token = format!("hmt_{}", URL_SAFE_NO_PAD.encode(bytes));
            println!("token (give to the client, shown once): {token}");
            println!("entry (add to HOOKMESH_TOKENS):         {}", entry(&token, &tenant));
        }
        TokenCmd::Hash { token, tenant } => println!("{}", entry(&token, &tenant)),
        TokenCmd::MasterKey => println!("{}", hookmesh_registry::secrets::new_master_key()),
    }
    Ok(())
}
