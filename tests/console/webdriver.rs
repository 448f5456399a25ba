//! A small W3C WebDriver client over the test's own HTTP client: chromedriver on a free port
//! driving Debian's headless Chromium. Every wait polls a condition with a deadline and fails
//! with what the page showed; nothing sleeps a fixed time.

use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";
pub const WAIT: Duration = Duration::from_secs(20);

/// Where chromedriver and Chromium are: `CHROMEDRIVER`/`CHROMIUM` or Debian's paths. Missing
/// ones fail the test with how to install them (`make deps`), never skip it.
fn tool(env: &str, candidates: &[&str]) -> String {
    if let Ok(p) = std::env::var(env) {
        return p;
    }
    for c in candidates {
        if std::path::Path::new(c).exists() {
            return c.to_string();
        }
    }
    panic!(
        "{} not found (tried {candidates:?}; set {env}): the browser tests need Debian's chromium and chromium-driver \
         (`make deps` installs them)",
        candidates[0]
    );
}

/// chromedriver, killed on drop.
pub struct Driver {
    child: Child,
    pub url: String,
}

impl Driver {
    pub fn start() -> Driver {
        let bin = tool("CHROMEDRIVER", &["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]);
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut child = Command::new(bin)
            .arg(format!("--port={port}"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        // chromedriver says it started on stdout; then it answers /status.
        let out = child.stdout.take().unwrap();
        std::thread::spawn(move || for _ in BufReader::new(out).lines() {});
        Driver { child, url: format!("http://127.0.0.1:{port}") }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One browser session.
pub struct Browser {
    http: reqwest::Client,
    base: String,
    /// The console's URL (`http://127.0.0.1:port`).
    pub console: String,
    _driver: Driver,
}

/// reqwest over rustls needs the process's crypto provider chosen once.
pub fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

impl Browser {
    pub async fn start(console: &str) -> Browser {
        install_crypto();
        let driver = Driver::start();
        let http = reqwest::Client::new();
        let deadline = Instant::now() + WAIT;
        loop {
            let ready = http.get(format!("{}/status", driver.url)).send().await;
            if let Ok(r) = ready {
                let v: Value = serde_json::from_str(&r.text().await.unwrap_or_default()).unwrap_or_default();
                if v["value"]["ready"] == json!(true) {
                    break;
                }
            }
            assert!(Instant::now() < deadline, "chromedriver did not become ready");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let chromium = tool("CHROMIUM", &["/usr/bin/chromium", "/usr/bin/chromium-browser"]);
        let caps = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": ["--headless=new", "--no-sandbox", "--disable-background-networking", "--disable-dev-shm-usage",
                         "--disable-gpu", "--window-size=1280,1000", "--hide-scrollbars"],
            },
        }}});
        let v = post(&http, &format!("{}/session", driver.url), &caps).await;
        let id = v["sessionId"].as_str().unwrap_or_else(|| panic!("no WebDriver session: {v}")).to_string();
        Browser {
            base: format!("{}/session/{id}", driver.url),
            http,
            console: console.trim_end_matches('/').to_string(),
            _driver: driver,
        }
    }

    async fn cmd(&self, path: &str, body: Value) -> Value {
        post(&self.http, &format!("{}{path}", self.base), &body).await
    }

    async fn get(&self, path: &str) -> Value {
        let r = self.http.get(format!("{}{path}", self.base)).send().await.expect("WebDriver answers");
        let v: Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
        v["value"].clone()
    }

    /// Opens a console path (`/webhooks`) or a whole URL.
    pub async fn open(&self, path: &str) {
        let url = if path.starts_with("http") { path.to_string() } else { format!("{}{path}", self.console) };
        self.cmd("/url", json!({ "url": url })).await;
    }

    pub async fn current_url(&self) -> String {
        self.get("/url").await.as_str().unwrap_or_default().to_string()
    }

    /// The page's visible text; empty while a navigation replaces the document (the callers
    /// poll).
    pub async fn text(&self) -> String {
        let body = json!({ "script": "return document.body ? document.body.innerText : ''", "args": [] });
        let r = self
            .http
            .post(format!("{}/execute/sync", self.base))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await;
        let Ok(r) = r else { return String::new() };
        let v: Value = serde_json::from_str(&r.text().await.unwrap_or_default()).unwrap_or_default();
        v["value"].as_str().unwrap_or_default().to_string()
    }

    /// Reloads the page and waits for it.
    pub async fn refresh(&self) {
        self.cmd("/refresh", json!({})).await;
    }

    pub async fn script(&self, script: &str, args: Value) -> Value {
        self.cmd("/execute/sync", json!({ "script": script, "args": args })).await
    }

    async fn find_now(&self, css: &str) -> Option<String> {
        let v = self.cmd("/element", json!({ "using": "css selector", "value": css })).await;
        v[ELEMENT].as_str().map(str::to_string)
    }

    /// Waits for an element matching `css`.
    pub async fn find(&self, css: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(e) = self.find_now(css).await {
                return e;
            }
            assert!(Instant::now() < deadline, "no `{css}` on {}:\n{}", self.current_url().await, self.text().await);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn exists(&self, css: &str) -> bool {
        self.find_now(css).await.is_some()
    }

    pub async fn click(&self, css: &str) {
        let e = self.find(css).await;
        self.cmd(&format!("/element/{e}/click"), json!({})).await;
    }

    /// Clears the field and types `text` into it.
    pub async fn fill(&self, css: &str, text: &str) {
        let e = self.find(css).await;
        self.cmd(&format!("/element/{e}/clear"), json!({})).await;
        self.cmd(&format!("/element/{e}/value"), json!({ "text": text })).await;
    }

    /// Chooses the option of `value` in the select `css`.
    pub async fn select(&self, css: &str, value: &str) {
        self.click(&format!("{css} option[value=\"{value}\"]")).await;
    }

    pub async fn element_text(&self, css: &str) -> String {
        let e = self.find(css).await;
        self.get(&format!("/element/{e}/text")).await.as_str().unwrap_or_default().to_string()
    }

    /// Waits until the page's text contains `needle`, reloading it between looks when
    /// `reload`; answers the text.
    pub async fn wait_text(&self, needle: &str, reload: bool) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let text = self.text().await;
            if text.contains(needle) {
                return text;
            }
            assert!(Instant::now() < deadline, "`{needle}` never showed on {}:\n{text}", self.current_url().await);
            if reload {
                self.refresh().await;
            } else {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }

    /// Switches into the `<iframe>` matching `css` (`None`: back to the top page).
    pub async fn frame(&self, css: Option<&str>) {
        match css {
            Some(css) => {
                let e = self.find(css).await;
                self.cmd("/frame", json!({ "id": { ELEMENT: e } })).await;
            }
            None => {
                self.cmd("/frame", json!({ "id": null })).await;
            }
        }
    }

    /// The session cookie's value (WebDriver sees HttpOnly cookies too) and its flags.
    pub async fn cookie(&self, name: &str) -> Value {
        self.get(&format!("/cookie/{name}")).await
    }

    /// Saves a PNG of the page as `<dir>/<name>.png`: `HOOKMESH_SCREENSHOTS` or the target's
    /// tmp dir. Answers the file.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        use base64::Engine;
        let dir = std::env::var("HOOKMESH_SCREENSHOTS")
            .map(PathBuf::from)
            .unwrap_or_else(|_| PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots"));
        std::fs::create_dir_all(&dir).unwrap();
        // The whole page: the window grows to the document's height first.
        let h = self.script("return document.documentElement.scrollHeight", json!([])).await.as_u64().unwrap_or(1000);
        self.cmd("/window/rect", json!({ "width": 1280, "height": h.clamp(700, 2400) + 120 })).await;
        let png = self.get("/screenshot").await;
        let bytes = base64::engine::general_purpose::STANDARD.decode(png.as_str().expect("a screenshot")).unwrap();
        let file = dir.join(format!("{name}.png"));
        std::fs::write(&file, &bytes).unwrap();
        self.cmd("/window/rect", json!({ "width": 1280, "height": 1000 })).await;
        assert!(bytes.len() > 1000, "screenshot {name} is empty");
        file
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Closing the session ends Chromium; chromedriver dies with `_driver`.
        let url = self.base.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async { reqwest::Client::new().delete(url).send().await })
        })
        .join();
    }
}

async fn post(http: &reqwest::Client, url: &str, body: &Value) -> Value {
    let r = http
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap_or_else(|e| panic!("WebDriver {url}: {e}"));
    let v: Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
    if v["value"]["error"].is_string() && !url.ends_with("/element") {
        panic!("WebDriver {url} {body}: {}", v["value"]);
    }
    if url.ends_with("/session") {
        return v["value"].clone();
    }
    v["value"].clone()
}
