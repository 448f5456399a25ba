//! What the dispatcher stores for tenants that mask personal data
//! ([`hookmesh_core::privacy`]).
//!
//! The renderer lists the event's personal values on the request (`RenderedRequest::personal`)
//! when the tenant masks. The dispatcher then keeps two forms of such a delivery:
//! - in memory, while it works on it, the request exactly as it must be sent;
//! - in the store, a copy whose URL, headers, body, error text and every attempt's request,
//!   response and error are masked, plus the exact request *sealed*: serialised and encrypted
//!   with AES-256-GCM under the deployment's master key (the key that protects signing secrets),
//!   so retries, resend and recover still send the original bytes.
//!
//! [`Vault::for_storage`] makes the stored form, [`Vault::open`] restores the working form.
//! The delivery log, the API and the attempt history stream only ever see the stored form.
//!
//! Without a master key the sealed copy is kept in clear (a warning is logged once): the log
//! and the API still show masked values, but the store holds the original. Deployments that
//! mask should configure `HOOKMESH_MASTER_KEY`.

use hookmesh_core::delivery::{Attempt, Delivery, RenderedRequest};
use hookmesh_core::privacy::Masker;
use hookmesh_registry::secrets::{self, SecretCipher};
use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, Ordering};

#[derive(Debug, Default)]
pub struct Vault {
    cipher: Option<SecretCipher>,
    warned: AtomicBool,
}

impl Vault {
    pub fn new(cipher: Option<SecretCipher>) -> Self {
        Vault { cipher, warned: AtomicBool::new(false) }
    }

    /// What to store for `d` (in its working form): `d` itself when nothing is masked, else
    /// the masked copy with the original request sealed beside it.
    pub fn for_storage<'a>(&self, d: &'a Delivery) -> Cow<'a, Delivery> {
        let Some(mut stored) = masked(d) else { return Cow::Borrowed(d) };
        stored.sealed_request = Some(self.seal(&d.request));
        Cow::Owned(stored)
    }

    /// A delivery in its working form as callers of the API and the logs may see it.
    pub fn for_display<'a>(&self, d: &'a Delivery) -> Cow<'a, Delivery> {
        masked(d).map_or(Cow::Borrowed(d), Cow::Owned)
    }

    fn seal(&self, request: &RenderedRequest) -> String {
        let json = serde_json::to_string(request).expect("requests serialise");
        match &self.cipher {
            Some(c) => c.encrypt(&json),
            None => {
                if !self.warned.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        "a tenant masks personal data but no master key is configured (HOOKMESH_MASTER_KEY): \
                         the original requests are stored in clear beside the masked log"
                    );
                }
                json
            }
        }
    }

    /// Restores the working form of a stored delivery.
    pub fn open(&self, d: &mut Delivery) -> Result<(), String> {
        let Some(sealed) = d.sealed_request.take() else { return Ok(()) };
        let json = secrets::open(self.cipher.as_ref(), &sealed)
            .map_err(|e| format!("delivery `{}`: the original request cannot be unsealed: {e}", d.id))?;
        d.request = serde_json::from_str::<RenderedRequest>(&json)
            .map_err(|e| format!("delivery `{}`: the sealed request is unreadable: {e}", d.id))?;
        Ok(())
    }

    /// `attempt` as it may be stored for `d` (in its working form).
    pub fn attempt_for_storage<'a>(&self, d: &Delivery, attempt: &'a Attempt) -> Cow<'a, Attempt> {
        if d.request.personal.is_empty() {
            return Cow::Borrowed(attempt);
        }
        let m = Masker::new(&d.request.personal);
        let mut a = attempt.clone();
        m.mask_in_place(&mut a.url);
        for (_, v) in a.request_headers.iter_mut().chain(a.response_headers.iter_mut()) {
            m.mask_in_place(v);
        }
        m.mask_body_in_place(&mut a.request_body);
        m.mask_body_in_place(&mut a.response_body);
        if let Some(e) = &mut a.error {
            m.mask_in_place(e);
        }
        Cow::Owned(a)
    }
}

/// A copy of `d` with its personal values masked and the list of them dropped; `None` when
/// its tenant does not mask.
fn masked(d: &Delivery) -> Option<Delivery> {
    if d.request.personal.is_empty() {
        return None;
    }
    let m = Masker::new(&d.request.personal);
    let mut copy = d.clone();
    mask_request(&m, &mut copy.request);
    copy.request.personal = Vec::new();
    if let Some(e) = &mut copy.last_error {
        m.mask_in_place(e);
    }
    Some(copy)
}

fn mask_request(m: &Masker, r: &mut RenderedRequest) {
    m.mask_in_place(&mut r.url);
    for (_, v) in &mut r.headers {
        m.mask_in_place(v);
    }
    m.mask_body_in_place(&mut r.body);
    if let Some(e) = &mut r.render_error {
        m.mask_in_place(e);
    }
    // Captured values the request was sent with may echo a personal value (a CRM answering
    // with the caller's number): masked as in the request itself.
    if let Some(values) = r.context.as_mut().and_then(|c| c.resolved.as_mut()) {
        for v in values.values_mut() {
            m.mask_in_place(v);
        }
    }
    // A held delivery keeps its event until it fires: the sealed copy has it, the log does not.
    if let Some(hold) = r.hold.as_mut() {
        hold.event = None;
    }
    // A tenant may mask a call data point the log shows (`mask_fields`: tracking, …).
    let call = &mut r.call;
    for v in
        [&mut call.campaign_id, &mut call.campaign_name, &mut call.direction, &mut call.tracking].into_iter().flatten()
    {
        m.mask_in_place(v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hookmesh_core::delivery::CallInfo;
    use hookmesh_core::delivery::{AttemptTrigger, DeliveryStatus};
    use hookmesh_core::event::EventType;
    use hookmesh_core::webhook::{DeliveryPolicy, Method, SuccessCondition};

    fn delivery(personal: &[&str]) -> Delivery {
        let request = RenderedRequest {
            delivery_id: "msg_1".into(),
            webhook_id: "wh_1".into(),
            webhook_version: 1,
            tenant_id: "acme".into(),
            event_id: "evt_1".into(),
            event_type: EventType::CallEnded,
            call_id: Some("call_1".into()),
            call: CallInfo {
                campaign_name: Some("Sales".into()),
                tracking: Some("7776734736".into()),
                ..Default::default()
            },
            first_trigger_at: chrono::Utc::now(),
            method: Method::Post,
            url: "https://crm.example/calls?from=7776734736".into(),
            headers: vec![("x-caller".into(), "7776734736".into())],
            body: r#"{"ani":"7776734736","email":"freddy@example.com","duration":36}"#.into(),
            success: SuccessCondition::default(),
            policy: DeliveryPolicy::default(),
            render_error: None,
            traceparent: None,
            personal: personal.iter().map(|s| s.to_string()).collect(),
            context: None,
            hold: None,
            data_points: None,
        };
        let mut d = Delivery::new(request, chrono::Utc::now());
        d.status = DeliveryStatus::Retrying;
        d.last_error = Some("status 500 from https://crm.example/calls?from=7776734736".into());
        d
    }

    fn cipher() -> SecretCipher {
        SecretCipher::new(&secrets::new_master_key(), &[]).unwrap()
    }

    #[test]
    fn unmasked_tenants_are_stored_as_they_are() {
        let d = delivery(&[]);
        assert!(matches!(Vault::new(Some(cipher())).for_storage(&d), Cow::Borrowed(_)));
    }

    #[test]
    fn the_stored_copy_is_masked_and_sealed_and_opens_to_the_original() {
        let vault = Vault::new(Some(cipher()));
        let d = delivery(&["7776734736", "freddy@example.com"]);
        let stored = vault.for_storage(&d).into_owned();
        let text = serde_json::to_string(&stored).unwrap();
        assert!(!text.contains("7776734736") && !text.contains("freddy@example.com"), "{text}");
        assert!(stored.request.personal.is_empty());
        assert_eq!(stored.request.url, "https://crm.example/calls?from=********36");
        assert_eq!(stored.request.call.tracking.as_deref(), Some("********36"));
        assert_eq!(stored.request.call.campaign_name.as_deref(), Some("Sales"));
        let body: serde_json::Value = serde_json::from_str(&stored.request.body).unwrap();
        assert_eq!(body["email"], "***");
        assert_eq!(body["duration"], 36);

        let mut reopened: Delivery = serde_json::from_str(&text).unwrap();
        vault.open(&mut reopened).unwrap();
        assert_eq!(reopened.request.body, d.request.body);
        assert_eq!(reopened.request.url, d.request.url);
        assert_eq!(reopened.request.call, d.request.call);
        assert_eq!(reopened.request.personal, d.request.personal);
        assert!(reopened.sealed_request.is_none());

        // Another deployment's key cannot open it, and says so.
        let mut foreign: Delivery = serde_json::from_str(&text).unwrap();
        let err = Vault::new(Some(cipher())).open(&mut foreign).unwrap_err();
        assert!(err.contains("cannot be unsealed"), "{err}");
    }

    #[test]
    fn context_values_shown_with_a_delivery_are_masked() {
        let vault = Vault::new(None);
        let mut d = delivery(&["7776734736"]);
        d.request.context = Some(hookmesh_core::context::ContextUse {
            nonce: "00".into(),
            names: vec!["phone".into()],
            wait_ms: 1,
            defaults: Default::default(),
            body_format: hookmesh_core::template::ContentType::Json,
            resolved: Some([("phone".to_string(), "7776734736".to_string())].into()),
        });
        let shown = vault.for_display(&d);
        let resolved = shown.request.context.as_ref().unwrap().resolved.as_ref().unwrap();
        assert_eq!(resolved["phone"], "********36");
    }

    #[test]
    fn attempts_are_masked_in_requests_responses_and_errors() {
        let vault = Vault::new(None);
        let d = delivery(&["7776734736"]);
        let attempt = Attempt {
            number: 1,
            trigger: AttemptTrigger::Scheduled,
            started_at: chrono::Utc::now(),
            method: Method::Post,
            url: d.request.url.clone(),
            request_headers: d.request.headers.clone(),
            request_body: d.request.body.clone(),
            response_status: Some(200),
            response_headers: vec![("x-echo".into(), "7776734736".into())],
            response_body: "created contact 7776734736".into(),
            duration_ms: 3,
            error_class: None,
            error: None,
            context_note: None,
        };
        let stored = vault.attempt_for_storage(&d, &attempt);
        assert!(!serde_json::to_string(&stored).unwrap().contains("7776734736"));
        assert_eq!(stored.response_body, "created contact ********36");
    }
}
