//! Browser tests of the web console: a real headless Chromium (Debian's `chromium` and
//! `chromium-driver`, which `make deps` installs) driven over WebDriver against `hookmesh
//! standalone` and a recording receiver. Each test saves a screenshot of the page it checks
//! (`HOOKMESH_SCREENSHOTS=docs/console` writes them where the README reads them).
//!
//! The tests share one machine's browser, so they take turns (a lock); each starts its own
//! hookmesh, receiver, chromedriver and Chromium.

#[path = "../e2e/support.rs"]
mod support;
mod webdriver;

use hookmesh_client::Client;
use hookmesh_proto::v1;
use serde_json::json;
use std::process::Command;
use std::time::{Duration, Instant};
use support::{Hookmesh, Recorder, BIN};
use webdriver::Browser;

const OPERATOR: &str = "op-console-token";
const ACME: &str = "acme-console-token";
const GLOBEX: &str = "globex-console-token";

static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn token_flags() -> String {
    use hookmesh_proto::auth::hash_token;
    format!(
        "sha256:{}=operator,sha256:{}=tenant:acme,sha256:{}=tenant:globex",
        hash_token(OPERATOR),
        hash_token(ACME),
        hash_token(GLOBEX)
    )
}

/// hookmesh with operator, acme and globex tokens, its console, and an operator API client.
async fn start(extra: &[&str]) -> (Hookmesh, Client) {
    let tokens = token_flags();
    let mut args = vec!["--ephemeral", "--tokens", tokens.as_str()];
    args.extend_from_slice(extra);
    let hm = Hookmesh::start_with(&args);
    if !extra.contains(&"--no-console") {
        assert!(hm.console.is_some(), "standalone serves the console by default: {}", hm.log_text());
    }
    let api = Client::connect(&hm.url(), Some(OPERATOR)).await.expect("the API answers");
    (hm, api)
}

async fn sign_in(b: &Browser, token: &str, who: &str) {
    b.open("/signin").await;
    b.fill("#token", token).await;
    b.click("#signin").await;
    b.wait_text(who, false).await;
}

async fn create_webhook(
    api: &Client,
    tenant: &str,
    name: &str,
    url: &str,
    policy: Option<v1::DeliveryPolicy>,
) -> v1::Webhook {
    let mut w = support::webhook(tenant, name, url);
    w.trigger = Some(v1::Trigger { event_types: vec!["call.ended".into()], ..Default::default() });
    w.policy = policy;
    api.webhooks()
        .create_webhook(v1::CreateWebhookRequest { webhook: Some(w), disabled: false })
        .await
        .expect("webhook created")
        .into_inner()
        .webhook
        .unwrap()
}

async fn publish(api: &Client, tenant: &str, call_ids: &[&str]) {
    let items = call_ids
        .iter()
        .map(|c| {
            let e = support::event(
                &format!("ev-{c}"),
                "call.ended",
                tenant,
                c,
                json!({ "ani": "7776734736", "duration": 42 }),
            );
            v1::PublishItem { payload: Some(v1::publish_item::Payload::Json(e.to_string())) }
        })
        .collect();
    let r = api.ingest().publish(v1::PublishRequest { events: items }).await.expect("publish").into_inner();
    assert!(r.results.iter().all(|x| x.accepted), "{r:?}");
}

async fn rows(b: &Browser) -> Vec<String> {
    let v = b
        .script(
            "return Array.from(document.querySelectorAll('#deliveries tbody tr')).map(r => r.dataset.status)",
            json!([]),
        )
        .await;
    v.as_array().map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_string)).collect()).unwrap_or_default()
}

/// Reloads the page until its delivery rows' statuses satisfy `cond`.
async fn rows_until(b: &Browser, what: &str, cond: impl Fn(&[String]) -> bool) -> Vec<String> {
    let deadline = Instant::now() + webdriver::WAIT;
    loop {
        let r = rows(b).await;
        if cond(&r) {
            return r;
        }
        assert!(Instant::now() < deadline, "the delivery log never showed {what}; rows: {r:?}\n{}", b.text().await);
        tokio::time::sleep(Duration::from_millis(200)).await;
        b.refresh().await;
    }
}

#[tokio::test]
async fn sign_in_create_from_an_xml_example_and_send_a_test_request() {
    let _turn = TURN.lock().await;
    let (hm, _api) = start(&[]).await;
    let receiver = Recorder::start().await;
    receiver.respond_with_body("<ack>received by crm</ack>");
    let b = Browser::start(hm.console.as_deref().unwrap()).await;

    // Signed out: every page sends to sign-in.
    b.open("/webhooks").await;
    b.find("#signin-form").await;
    assert!(b.current_url().await.ends_with("/signin"));
    b.fill("#token", "not-a-token").await;
    b.click("#signin").await;
    b.wait_text("unknown token", false).await;
    b.screenshot("signin").await;
    sign_in(&b, OPERATOR, "Operator").await;

    b.open("/webhooks/new").await;
    b.fill("#tenant_id", "acme").await;
    b.fill("#name", "crm-xml").await;
    b.fill("#url", &receiver.url("/crm")).await;
    b.select("#content_type", "xml").await;
    b.select("#body-format", "xml").await;
    b.fill(
        "#body-example",
        "<call><caller>+15550001</caller><dialed>+15550002</dialed><source>website</source></call>",
    )
    .await;
    b.click("#extract").await;
    b.wait_text("3 fields extracted", false).await;
    // Each extracted field gets a drop-down of tokens grouped by category, or a constant.
    let groups = b.script("return document.querySelectorAll('#field-0 optgroup').length", json!([])).await;
    assert!(groups.as_u64().unwrap() >= 5, "tokens grouped by category: {groups}");
    b.select("#field-0", "ani").await;
    b.select("#field-1", "tracking").await;
    b.select("#field-2", "__const").await;
    b.fill("input[name=\"field.2.const\"]", "hookmesh-console").await;
    b.click("#preview").await;
    let preview = b.element_text("#preview-output").await;
    assert!(preview.contains("<caller>7776734736</caller>"), "{preview}");
    assert!(
        preview.contains("<dialed>7774839229</dialed>") && preview.contains("<source>hookmesh-console</source>"),
        "{preview}"
    );
    b.screenshot("webhook-from-example").await;
    b.click("#save").await;
    let secret = b.element_text("#secret").await;
    assert!(secret.starts_with("whsec_"), "the secret is shown once: {secret}");
    b.click("#continue").await;
    b.find("#send-test").await;
    b.click("#send-test").await;
    b.wait_text("Delivered: the receiver accepted the request.", false).await;
    assert_eq!(b.element_text("#test-status").await, "200");
    assert!(b.element_text("#test-response").await.contains("<ack>received by crm</ack>"));
    b.screenshot("test-request").await;
    let got = receiver.wait_for(1, webdriver::WAIT).await;
    let body = String::from_utf8_lossy(&got[0].body).to_string();
    assert!(
        body.contains("<caller>7776734736</caller>") && body.contains("<source>hookmesh-console</source>"),
        "{body}"
    );
    support::verify_signature(&secret, &got[0]).expect("signed with the secret the page showed");

    // Sign out ends the session.
    b.click("#signout").await;
    b.find("#signin-form").await;
    b.open("/webhooks").await;
    b.find("#signin-form").await;
}

#[tokio::test]
async fn deliveries_show_statuses_details_and_a_failing_receiver_is_resent_and_recovered_from_the_page() {
    let _turn = TURN.lock().await;
    let (hm, api) = start(&[]).await;
    let receiver = Recorder::start().await;
    receiver.script(&[], 500);
    // The first retry an hour away: the failed deliveries wait as `retrying` for the page.
    let policy = v1::DeliveryPolicy { retry_schedule: vec![3600], retry_limit: Some(3), ..Default::default() };
    let w = create_webhook(&api, "acme", "calls-to-crm", &receiver.url("/calls"), Some(policy)).await;
    let b = Browser::start(hm.console.as_deref().unwrap()).await;
    sign_in(&b, ACME, "Tenant · acme").await;

    // The live log (the vendored helper refreshes its rows in place) shows the calls as they
    // come, without a reload.
    b.open(&format!("/deliveries?webhook_id={}&live=1", w.id)).await;
    b.find("#no-deliveries").await;
    publish(&api, "acme", &["call-1", "call-2", "call-3"]).await;
    let text = b.wait_text("call-3", false).await;
    assert!(text.contains("call-1") && text.contains("call-2"), "{text}");
    b.open(&format!("/deliveries?webhook_id={}", w.id)).await;
    rows_until(&b, "three retrying deliveries", |r| r.len() == 3 && r.iter().all(|s| s == "retrying")).await;
    b.screenshot("delivery-log").await;

    // Paging, newest first: two per page, then the oldest one.
    b.open(&format!("/deliveries?webhook_id={}&limit=2", w.id)).await;
    assert_eq!(rows(&b).await.len(), 2);
    let first_page = b.element_text("#deliveries").await;
    b.click("#older").await;
    b.find("#newest").await;
    assert_eq!(rows(&b).await.len(), 1, "the third delivery on the second page");
    let second_page = b.element_text("#deliveries").await;
    let calls = |t: &str| ["call-1", "call-2", "call-3"].iter().filter(|c| t.contains(*c)).count();
    assert_eq!((calls(&first_page), calls(&second_page)), (2, 1), "pages do not overlap:\n{first_page}\n{second_page}");
    assert!(!b.exists("#older").await, "no page after the last");
    b.open(&format!("/deliveries?webhook_id={}", w.id)).await;

    // Filters: one call.
    b.fill("input[name=call_id]", "call-2").await;
    b.click("#apply-filters").await;
    rows_until(&b, "the one delivery of call-2", |r| r.len() == 1).await;
    assert!(b.text().await.contains("call-2"));

    b.click("#deliveries .details").await;
    b.find("#attempts").await;
    let text = b.wait_text("Attempts (1)", false).await;
    assert!(text.contains("500") && text.contains("call-2"), "{text}");
    assert_eq!(b.element_text("#delivery-status").await, "retrying");
    b.screenshot("delivery-details").await;

    // The receiver recovers; Resend from the page delivers this one now.
    receiver.script(&[], 200);
    b.click("#resend").await;
    b.wait_text("Resent: the receiver answered 200; the delivery is now success", false).await;
    assert_eq!(b.element_text("#delivery-status").await, "success");
    assert!(b.text().await.contains("Attempts (2)"));
    b.screenshot("delivery-resent").await;

    // Recover since an hour ago sends the other two.
    b.open(&format!("/webhooks/{}", w.id)).await;
    b.click("#recover").await;
    b.wait_text("Recover: 2 failed deliveries found, 2 succeeded, 0 failed again", false).await;
    b.open(&format!("/deliveries?webhook_id={}", w.id)).await;
    rows_until(&b, "three delivered", |r| r.len() == 3 && r.iter().all(|s| s == "success")).await;
    b.open(&format!("/webhooks/{}", w.id)).await;
    b.find("#chart").await;
    b.screenshot("webhook-health").await;
    b.open("/webhooks").await;
    b.find("#webhooks").await;
    b.screenshot("webhooks").await;
}

#[tokio::test]
async fn a_portal_link_for_one_tenant_never_shows_another_tenants_objects() {
    let _turn = TURN.lock().await;
    let (hm, api) = start(&["--console-frame-origins", "https://app.example.com"]).await;
    let receiver = Recorder::start().await;
    let console = hm.console.clone().unwrap();
    let acme = create_webhook(&api, "acme", "acme-hook", &receiver.url("/a"), None).await;
    let globex = create_webhook(&api, "globex", "globex-hook", &receiver.url("/g"), None).await;
    publish(&api, "globex", &["globex-call-1"]).await;
    publish(&api, "acme", &["acme-call-1"]).await;
    let log = api.deliveries();
    let mut globex_delivery = String::new();
    assert!(
        support::wait_until_async(
            webdriver::WAIT,
            || {
                let mut log = log.clone();
                let id = globex.id.clone();
                async move { log.list_deliveries(v1::ListDeliveriesRequest { webhook_id: id, ..Default::default() }).await }
            },
            |r| match r {
                Ok(r) => r.get_ref().deliveries.first().map(|d| globex_delivery = d.id.clone()).is_some(),
                Err(_) => false,
            },
        )
        .await,
        "globex's delivery is logged"
    );

    // A tenant token cannot issue portal links; the operator's can.
    let ctl = |token: &str, tenant: &str| {
        Command::new(BIN)
            .args(["ctl", "--addr", &hm.url(), "--token", token, "portal-link", "--tenant", tenant, "--ttl", "10m"])
            .args(["--console", &console])
            .output()
            .unwrap()
    };
    let refused = ctl(ACME, "globex");
    assert!(!refused.status.success() && String::from_utf8_lossy(&refused.stderr).contains("operator token"));
    let out = ctl(OPERATOR, "acme");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let link = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(link.starts_with(&format!("{console}/portal?token=hmp_")), "{link}");

    let b = Browser::start(&console).await;
    b.open(&link).await;
    let text = b.wait_text("Portal · acme", false).await;
    assert!(text.contains("acme-hook") && !text.contains("globex"), "{text}");
    assert!(!b.current_url().await.contains("token="), "the token leaves the address bar");
    b.screenshot("portal").await;
    let cookie = b.cookie("hookmesh_session").await;
    assert_eq!((cookie["httpOnly"].as_bool(), cookie["sameSite"].as_str()), (Some(true), Some("Strict")), "{cookie}");

    // Guessed URLs and filters: nothing of globex.
    for path in [
        format!("/webhooks/{}", globex.id),
        format!("/webhooks/{}/edit", globex.id),
        format!("/webhooks/{}/delete", globex.id),
        format!("/deliveries/{globex_delivery}"),
        format!("/deliveries?webhook_id={}", globex.id),
        "/deliveries?tenant=globex".to_string(),
        "/webhooks?tenant=globex".to_string(),
        "/deliveries".to_string(),
        "/templates".to_string(),
        "/dead-letters".to_string(),
    ] {
        b.open(&path).await;
        b.find("body").await;
        let text = b.text().await;
        assert!(!text.contains("globex"), "{path} shows globex:\n{text}");
    }
    b.open(&format!("/webhooks/{}", globex.id)).await;
    assert!(b.text().await.contains("404"));
    b.screenshot("portal-guessed-url").await;
    // Its own webhook opens.
    b.open(&format!("/webhooks/{}", acme.id)).await;
    b.wait_text("acme-hook", false).await;
    // A forged POST with the session's own CSRF token against globex's webhook is refused by
    // the API, and the webhook stays enabled.
    b.script(
        "const f = document.createElement('form'); f.method = 'post'; f.action = arguments[0];
         const c = document.createElement('input'); c.name = 'csrf'; c.value = document.querySelector('input[name=csrf]').value;
         f.appendChild(c); document.body.appendChild(f); f.submit();",
        json!([format!("/webhooks/{}/disable", globex.id)]),
    )
    .await;
    b.wait_text("404", false).await;
    let still = api.webhooks().get_webhook(v1::GetWebhookRequest { id: globex.id.clone() }).await.unwrap().into_inner();
    assert!(still.enabled, "globex's webhook was not changed");

    // Framing: portal pages name the configured origin; other pages allow no one.
    webdriver::install_crypto();
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let portal_page = http
        .get(format!("{console}/webhooks"))
        .header("cookie", format!("hookmesh_session={}", cookie["value"].as_str().unwrap()))
        .send()
        .await
        .unwrap();
    let csp = portal_page.headers()["content-security-policy"].to_str().unwrap().to_string();
    assert!(csp.ends_with("frame-ancestors https://app.example.com"), "{csp}");
    let signin = http.get(format!("{console}/signin")).send().await.unwrap();
    assert!(signin.headers()["content-security-policy"].to_str().unwrap().ends_with("frame-ancestors 'none'"));
    // A POST without a session, even to a page open without one, is refused (and answered).
    let post = http
        .post(format!("{console}/portal"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("token=x")
        .send()
        .await
        .unwrap();
    assert_eq!(post.status().as_u16(), 403);
    // A forged link opens nothing.
    b.open("/portal?token=hmp_Z2xvYmV4ADk5OTk5OTk5OTk.AAAA").await;
    b.wait_text("this portal link cannot be used", false).await;
}

#[tokio::test]
async fn a_post_without_the_csrf_token_is_refused() {
    let _turn = TURN.lock().await;
    let (hm, api) = start(&[]).await;
    let w = create_webhook(&api, "acme", "csrf-target", "http://127.0.0.1:9/x", None).await;
    let b = Browser::start(hm.console.as_deref().unwrap()).await;
    sign_in(&b, OPERATOR, "Operator").await;
    b.open(&format!("/webhooks/{}", w.id)).await;
    b.find("#toggle").await;
    // The same form without its hidden token, and with a wrong one: refused, nothing changes.
    for tamper in ["t.remove()", "t.value = 'forged'"] {
        b.open(&format!("/webhooks/{}", w.id)).await;
        b.script(
            &format!("const t = document.querySelector('#toggle').form.querySelector('input[name=csrf]'); {tamper};"),
            json!([]),
        )
        .await;
        b.click("#toggle").await;
        b.wait_text("CSRF token is missing or wrong", false).await;
        let now = api.webhooks().get_webhook(v1::GetWebhookRequest { id: w.id.clone() }).await.unwrap().into_inner();
        assert!(now.enabled, "a POST without the right CSRF token changed nothing ({tamper})");
    }
    b.screenshot("csrf-refused").await;
    // A form larger than the console reads is refused before anything else.
    webdriver::install_crypto();
    let cookie = b.cookie("hookmesh_session").await["value"].as_str().unwrap().to_string();
    let big = reqwest::Client::new()
        .post(format!("{}/webhooks/new", b.console))
        .header("cookie", format!("hookmesh_session={cookie}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("name={}", "x".repeat(300 * 1024)))
        .send()
        .await
        .unwrap();
    assert_eq!(big.status().as_u16(), 413);
    // With it, the same button works.
    b.open(&format!("/webhooks/{}", w.id)).await;
    b.click("#toggle").await;
    b.wait_text("Webhook disabled", false).await;
    let now = api.webhooks().get_webhook(v1::GetWebhookRequest { id: w.id.clone() }).await.unwrap().into_inner();
    assert!(!now.enabled);

    // Operators make portal links on a page too; the link opens the portal of that tenant.
    b.open("/portal-links").await;
    b.fill("#portal-tenant", "acme").await;
    b.fill("#portal-ttl", "forever").await;
    b.click("#make-portal-link").await;
    b.wait_text("ttl: `forever` is not a duration", false).await;
    b.fill("#portal-ttl", "10m").await;
    b.click("#make-portal-link").await;
    let url = b.element_text("#portal-url").await;
    assert!(url.starts_with(&format!("{}/portal?token=hmp_", b.console)), "{url}");
    b.screenshot("portal-link").await;
    b.open(&url).await;
    let text = b.wait_text("Portal · acme", false).await;
    assert!(text.contains("csrf-target") && !text.contains("Portal links"), "{text}");
    b.open("/portal-links").await;
    b.wait_text("portal links are issued by operators", false).await;
}

#[tokio::test]
async fn open_local_mode_says_so_on_every_page_and_errors_land_at_their_field() {
    let _turn = TURN.lock().await;
    let hm = Hookmesh::start_with(&["--ephemeral"]);
    let b = Browser::start(hm.console.as_deref().unwrap()).await;
    for path in
        ["/webhooks", "/deliveries", "/templates", "/tokens", "/webhooks/new", "/signin", "/webhooks/no-such-id"]
    {
        b.open(path).await;
        b.find("#open-mode").await;
    }
    b.open("/webhooks/new").await;
    b.fill("#tenant_id", "acme").await;
    b.fill("#name", "bad-url").await;
    b.fill("#url", "ftp://example.com/x").await;
    b.click("input[name=\"body.mode\"][value=none]").await;
    b.click("#save").await;
    let e = b.element_text(".field-error[data-field=\"request.url\"]").await;
    assert!(e.starts_with("request.url:"), "{e}");
    // Escaped, not interpreted: markup in a value comes back as text.
    b.fill("#name", "<b id=injected>x</b>").await;
    b.click("#save").await;
    b.find(".field-error").await;
    assert!(!b.exists("#injected").await, "values are escaped");
    b.screenshot("field-error").await;
    b.open("/tokens").await;
    b.wait_text("%ani%", false).await;
    b.screenshot("tokens").await;
}

/// `hookmesh console` as a process of its own, every API service routed to where it is served
/// (`--api` itself points nowhere): what the Helm chart and compose run.
#[tokio::test]
async fn the_console_subcommand_serves_over_routed_apis() {
    let _turn = TURN.lock().await;
    let (hm, api) = start(&["--no-console"]).await;
    assert!(hm.console.is_none(), "--no-console serves none");
    create_webhook(&api, "acme", "routed-hook", "http://127.0.0.1:9/x", None).await;
    let grpc = hm.url();
    let mut cmd = Command::new(BIN);
    cmd.args(["console", "--api", "http://127.0.0.1:1", "--addr", "127.0.0.1:0"]);
    for s in hookmesh_client::SERVICES {
        cmd.arg("--api-route").arg(format!("{s}={grpc}"));
    }
    let mut child = cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::null()).spawn().unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().unwrap()), &mut line).unwrap();
    let console = line.split_whitespace().find_map(|w| w.strip_prefix("console=")).expect(&line).to_string();
    let b = Browser::start(&console).await;
    sign_in(&b, ACME, "Tenant · acme").await;
    b.wait_text("routed-hook", false).await;
    b.open("/deliveries").await;
    b.find("#filters").await;
    b.open("/tokens").await;
    b.wait_text("%ani%", false).await;
    drop(b);
    let _ = child.kill();
    let _ = child.wait();
    // A service name that does not exist is refused at start, naming the flag.
    let out = Command::new(BIN)
        .args(["console", "--api-route", "NopeService=http://x:1", "--addr", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("--api-route"), "{out:?}");
}

#[tokio::test]
async fn templates_from_an_example_are_picked_by_webhooks() {
    let _turn = TURN.lock().await;
    let (hm, api) = start(&[]).await;
    let b = Browser::start(hm.console.as_deref().unwrap()).await;
    sign_in(&b, OPERATOR, "Operator").await;
    b.open("/templates/new").await;
    b.fill("input[name=tenant_id]", "acme").await;
    b.fill("input[name=name]", "crm-json").await;
    b.fill("#body-example", r#"{"phone": "+1555", "campaign": "x"}"#).await;
    b.click("#extract").await;
    b.wait_text("2 fields extracted", false).await;
    b.select("#field-0", "ani").await;
    b.select("#field-1", "__const").await;
    b.fill("input[name=\"field.1.const\"]", "Spring").await;
    b.screenshot("template-form").await;
    b.click("#template-form button.primary").await;
    b.wait_text("Template saved", false).await;
    assert!(b.text().await.contains("crm-json"));
    let t = api
        .templates()
        .list_templates(v1::ListTemplatesRequest { tenant_id: "acme".into(), group: String::new() })
        .await
        .unwrap()
        .into_inner()
        .templates
        .remove(0);
    // Edit keeps what each field was mapped to.
    b.open(&format!("/templates/{}/edit", t.id)).await;
    let chosen = b.script("return document.querySelector('#field-0').value", json!([])).await;
    assert_eq!(chosen, json!("ani"));
    // A webhook whose body is that template.
    b.open("/webhooks/new").await;
    b.fill("#tenant_id", "acme").await;
    b.fill("#name", "uses-template").await;
    b.fill("#url", "http://127.0.0.1:9/x").await;
    b.click("input[name=\"body.mode\"][value=template]").await;
    b.select("#template-id", &t.id).await;
    b.click("#preview").await;
    let preview = b.element_text("#preview-output").await;
    assert!(preview.contains(r#""phone":"7776734736""#) && preview.contains(r#""campaign":"Spring""#), "{preview}");
    b.click("#save").await;
    b.find("#secret").await;
}

/// The form shows a webhook's call context and enrichment: saving it unchanged keeps them, and
/// enrichment set in the form reaches the API; a bad entry is refused naming its field.
#[tokio::test]
async fn the_webhook_form_edits_call_context_and_enrichment() {
    let _turn = TURN.lock().await;
    let (hm, api) = start(&[]).await;
    let mut w = support::webhook("acme", "crm-create", "http://127.0.0.1:9/leads");
    w.captures = vec![v1::Capture { name: "lead_id".into(), path: "$.data.id".into() }];
    w.context_wait_ms = 45_000;
    w.context_defaults = vec![v1::KeyValue { name: "lead_id".into(), value: "unknown".into() }];
    let w = api
        .webhooks()
        .create_webhook(v1::CreateWebhookRequest { webhook: Some(w), disabled: false })
        .await
        .expect("webhook created")
        .into_inner()
        .webhook
        .unwrap();
    let b = Browser::start(hm.console.as_deref().unwrap()).await;
    sign_in(&b, OPERATOR, "Operator").await;
    b.open(&format!("/webhooks/{}/edit", w.id)).await;
    b.fill("#name", "crm-create-renamed").await;
    b.click("#save").await;
    b.wait_text("Webhook saved", false).await;
    let saved = api.webhooks().get_webhook(v1::GetWebhookRequest { id: w.id.clone() }).await.unwrap().into_inner();
    assert_eq!(saved.name, "crm-create-renamed");
    assert_eq!(saved.version, w.version + 1);
    assert_eq!(
        (saved.captures, saved.context_wait_ms, saved.context_defaults),
        (w.captures.clone(), 45_000, w.context_defaults.clone())
    );

    // Enrichment through the form.
    b.open(&format!("/webhooks/{}/edit", w.id)).await;
    b.fill("#wait_for", "recording_url, transcript").await;
    b.fill("#max_wait", "10m").await;
    b.click("#save").await;
    b.wait_text("Webhook saved", false).await;
    let saved = api.webhooks().get_webhook(v1::GetWebhookRequest { id: w.id.clone() }).await.unwrap().into_inner();
    assert_eq!(saved.wait_for, vec!["recording_url".to_string(), "transcript".to_string()]);
    assert_eq!(saved.max_wait_ms, 600_000);
    assert_eq!(saved.captures, w.captures, "the captures stay");

    // A name that is no data point name is refused, next to its field.
    b.open(&format!("/webhooks/{}/edit", w.id)).await;
    b.fill("#wait_for", "recording_url, Transcript").await;
    b.click("#save").await;
    b.wait_text("`Transcript` is not a data point name", false).await;
    let kept = api.webhooks().get_webhook(v1::GetWebhookRequest { id: w.id.clone() }).await.unwrap().into_inner();
    assert_eq!(kept.version, saved.version, "nothing was saved");
}

/// A page that embeds `link` in an iframe, served on `listener` (reached as `localhost`, another
/// site than the console's `127.0.0.1`).
fn embedding_page(listener: tokio::net::TcpListener, link: String) {
    let html = format!("<!doctype html><title>platform</title><h1>Platform app</h1><iframe id=portal src=\"{link}\" width=1200 height=700></iframe>");
    let app = axum::Router::new().fallback(move || {
        let html = html.clone();
        async move { ([("content-type", "text/html")], html) }
    });
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
}

#[tokio::test]
async fn the_portal_opens_framed_by_an_allowed_origin_only() {
    let _turn = TURN.lock().await;
    let allowed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let other = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://localhost:{}", allowed.local_addr().unwrap().port());
    let other_origin = format!("http://localhost:{}", other.local_addr().unwrap().port());
    let (hm, api) = start(&["--console-frame-origins", &origin, "--console-secure-cookies"]).await;
    create_webhook(&api, "acme", "framed-hook", "http://127.0.0.1:9/x", None).await;
    let console = hm.console.clone().unwrap();
    let mut links = Vec::new();
    for _ in 0..2 {
        let r = api
            .tenants()
            .create_portal_link(v1::CreatePortalLinkRequest { tenant_id: "acme".into(), ttl_secs: 600 })
            .await
            .unwrap()
            .into_inner();
        links.push(format!("{console}/portal?token={}", r.token));
    }
    embedding_page(allowed, links.remove(0));
    embedding_page(other, links.remove(0));
    let b = Browser::start(&console).await;

    b.open(&origin).await;
    b.find("#portal").await;
    b.frame(Some("#portal")).await;
    let text = b.wait_text("Portal · acme", false).await;
    assert!(text.contains("framed-hook"), "{text}");
    // A portal page works inside the frame: its session cookie came back with the redirect.
    b.click(".webhook-name").await;
    b.wait_text("Endpoint health", false).await;
    b.frame(None).await;
    b.screenshot("portal-framed").await;

    // Another origin: the browser refuses to render the console in its frame. Navigation
    // returns once the page and its frames have loaded (or failed to).
    b.open(&other_origin).await;
    b.find("#portal").await;
    assert_eq!(b.script("return document.readyState", json!([])).await, json!("complete"));
    b.frame(Some("#portal")).await;
    // Chromium's page for a frame that frame-ancestors refused.
    let text = b.wait_text("refused to connect", false).await;
    assert!(!text.contains("framed-hook") && !text.contains("Portal"), "framed by {other_origin}:\n{text}");
    b.frame(None).await;
}

/// A tenant that masks personal data sees the masked log in the console too: the console shows
/// what the API answers and keeps no copy of its own.
#[tokio::test]
async fn a_masked_tenant_sees_masked_logs() {
    let _turn = TURN.lock().await;
    let key = String::from_utf8(Command::new(BIN).args(["token", "master-key"]).output().unwrap().stdout).unwrap();
    let (hm, api) = start(&["--master-key", key.trim()]).await;
    let b = Browser::start(hm.console.as_deref().unwrap()).await;
    sign_in(&b, ACME, "Tenant · acme").await;
    // The tenant turns masking on in its settings; a bad field name is refused at its field.
    b.open("/settings").await;
    b.click("#mask").await;
    b.fill("input[name=mask_fields]", "order ref").await;
    b.click("#save-settings").await;
    let e = b.element_text(".field-error[data-field=mask_fields]").await;
    assert!(e.starts_with("mask_fields[0]:"), "{e}");
    b.fill("input[name=mask_fields]", "order_ref").await;
    b.click("#save-settings").await;
    b.wait_text("Settings saved", false).await;
    let s = api
        .tenants()
        .get_tenant_settings(v1::GetTenantSettingsRequest { tenant_id: "acme".into() })
        .await
        .unwrap()
        .into_inner();
    assert!(s.mask_personal_data && s.mask_fields == ["order_ref"], "{s:?}");
    let receiver = Recorder::start().await;
    let w = create_webhook(&api, "acme", "masked-hook", &receiver.url("/m"), None).await;
    publish(&api, "acme", &["masked-call"]).await;
    let got = receiver.wait_for(1, webdriver::WAIT).await;
    assert!(String::from_utf8_lossy(&got[0].body).contains("7776734736"), "the receiver gets the real number");
    b.open(&format!("/deliveries?webhook_id={}", w.id)).await;
    rows_until(&b, "the delivered call", |r| r == ["success"]).await;
    b.click("#deliveries .details").await;
    let text = b.wait_text("Attempts (1)", false).await;
    assert!(text.contains("********36") && !text.contains("7776734736"), "{text}");
    b.screenshot("masked-delivery").await;
}
