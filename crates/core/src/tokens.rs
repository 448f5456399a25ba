//! The token catalog: every data point a webhook template can draw from.
//!
//! A *token* names one value of a call event: `callid`, `ani`, `call_end_time`,
//! `utm_campaign`, `tags`, … Each has a category (the group the template editor shows it
//! under: call begin, call end, DNI, location info, contact, campaign, agent outcome,
//! conversation, or the event envelope itself), a value type, a description and a realistic
//! example. The catalog covers every body token of the reference call-tracking product
//! (`%callid%` … `%visitor_long%`), the call-log, contact and agent-outcome fields of the AI
//! calling reference (as snake_case names: `call_sid`, `call_duration`, `contact_email`,
//! `outcome`, …), conversation and campaign data points, and the IVR fields.
//!
//! # Writing tokens in templates
//! Text templates write a token as `{{ callid }}` (any template expression may use it:
//! `{{ ani | default("unknown") }}`); the reference products' placeholder form `%callid%` is
//! accepted too, and [`lookup`] understands both the bare name and `%name%`. Field-mapping
//! templates map an extracted field of the user's own JSON/XML sample to a token name.
//!
//! # How values are resolved
//! [`token_value`] resolves a token on an [`Event`]:
//! - envelope tokens come from the event itself: `event_id` (`id`), `event_type` (canonical
//!   dotted name), `occurred_at` (RFC 3339, milliseconds, `Z`), `tenant_id`, and `callid` /
//!   `call_id` (the event's `call_id`);
//! - every other token is the value stored under its name in the event's `data` object,
//!   exactly as ingest normalised it (timestamps as UTC RFC 3339 strings, integers and
//!   numbers as JSON numbers — see [`typed_data_fields`]). An absent or `null` value resolves
//!   to `None`; rendering decides whether that becomes an empty string, `null` or a default.
//!
//! Keys in `data` that are not in the catalog are kept and still reachable by name; the
//! catalog only documents, types and exemplifies the well-known ones.
//!
//! [`sample_event`] builds a `call.ended` event carrying every token's example; previews and
//! test sends render against it.

use crate::event::{Event, EventType};
use chrono::{SecondsFormat, TimeZone, Utc};
use serde::Serialize;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::fmt;
use std::sync::OnceLock;

/// The group a token is listed under in the template editor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenCategory {
    /// The event envelope: id, type, time, tenant, call id.
    Event,
    /// Known when the call begins: caller, tracking number, caller lookup, campaign, IVR.
    CallBegin,
    /// Known when the call ends: durations, status, recordings, treatment responses.
    CallEnd,
    /// Dynamic number insertion: the web visit that led to the call.
    Dni,
    /// The location/account the call belongs to.
    LocationInfo,
    /// The contact record of the person called or calling.
    Contact,
    /// The campaign the call or event belongs to.
    Campaign,
    /// What the AI agent determined about the call.
    AgentOutcome,
    /// Live conversation data: transcript segments, intents, entities.
    Conversation,
}

impl TokenCategory {
    /// Every category, in the order the template editor lists them.
    pub const ALL: &'static [TokenCategory] = &[
        TokenCategory::Event,
        TokenCategory::CallBegin,
        TokenCategory::CallEnd,
        TokenCategory::Dni,
        TokenCategory::LocationInfo,
        TokenCategory::Contact,
        TokenCategory::Campaign,
        TokenCategory::AgentOutcome,
        TokenCategory::Conversation,
    ];

    /// The snake_case name, as serialised: `call_begin`, `location_info`, ….
    pub fn as_str(self) -> &'static str {
        match self {
            TokenCategory::Event => "event",
            TokenCategory::CallBegin => "call_begin",
            TokenCategory::CallEnd => "call_end",
            TokenCategory::Dni => "dni",
            TokenCategory::LocationInfo => "location_info",
            TokenCategory::Contact => "contact",
            TokenCategory::Campaign => "campaign",
            TokenCategory::AgentOutcome => "agent_outcome",
            TokenCategory::Conversation => "conversation",
        }
    }
}

impl fmt::Display for TokenCategory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The JSON shape of a token's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenType {
    /// A JSON string.
    String,
    /// A JSON integer (durations in seconds, counts, 0/1 flags).
    Integer,
    /// A JSON number (coordinates, confidences).
    Number,
    /// A JSON boolean.
    Boolean,
    /// An RFC 3339 UTC string, e.g. `2019-03-28T00:05:00.000Z`.
    Timestamp,
    /// A telephone number as a JSON string.
    Phone,
    /// An absolute URL as a JSON string.
    Url,
    /// A JSON object.
    Object,
    /// A JSON array.
    Array,
}

impl TokenType {
    /// The snake_case name, as serialised.
    pub fn as_str(self) -> &'static str {
        match self {
            TokenType::String => "string",
            TokenType::Integer => "integer",
            TokenType::Number => "number",
            TokenType::Boolean => "boolean",
            TokenType::Timestamp => "timestamp",
            TokenType::Phone => "phone",
            TokenType::Url => "url",
            TokenType::Object => "object",
            TokenType::Array => "array",
        }
    }
}

impl fmt::Display for TokenType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One entry of the catalog.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct TokenDef {
    /// The token name, lowercase snake_case: `callid`, `ani_city`.
    pub name: &'static str,
    pub category: TokenCategory,
    pub ty: TokenType,
    pub description: &'static str,
    /// example as JSON text, e.g. "\"7776734736\"" or "36" or "{\"region\":\"south\"}"
    pub example: &'static str,
}

impl TokenDef {
    /// The example parsed as JSON (the raw text as a string if it were not valid JSON,
    /// which the catalog's tests rule out).
    pub fn example_value(&self) -> Value {
        serde_json::from_str(self.example).unwrap_or_else(|_| Value::String(self.example.to_string()))
    }

    /// Whether the token is resolved from the event envelope rather than from `data`.
    pub fn is_event_level(&self) -> bool {
        is_event_level(self.name)
    }
}

/// Envelope tokens: resolved from the event's own fields, never stored under `data`.
const EVENT_LEVEL: &[&str] = &["event_id", "event_type", "occurred_at", "tenant_id", "callid", "call_id"];

fn is_event_level(name: &str) -> bool {
    EVENT_LEVEL.contains(&name)
}

const fn t(
    name: &'static str,
    category: TokenCategory,
    ty: TokenType,
    description: &'static str,
    example: &'static str,
) -> TokenDef {
    TokenDef { name, category, ty, description, example }
}

use TokenCategory as C;
use TokenType as T;

static CATALOG: &[TokenDef] = &[
    // ---- Event envelope -------------------------------------------------------------------
    t("event_id", C::Event, T::String, "Event ID - Unique identifier of the event", "\"evt_sample\""),
    t(
        "event_type",
        C::Event,
        T::String,
        "Event Type - Canonical event name (call.started, call.ended, …)",
        "\"call.ended\"",
    ),
    t(
        "occurred_at",
        C::Event,
        T::Timestamp,
        "Occurred At - When the event happened (UTC)",
        "\"2019-03-28T00:05:30.000Z\"",
    ),
    t("tenant_id", C::Event, T::String, "Tenant ID - The account/location the call belongs to", "\"sample\""),
    t(
        "call_id",
        C::Event,
        T::String,
        "Call ID - Unique identifier of the call (same value as callid)",
        "\"093cc03c.e6a4.6ac6.978f.740b10afeaca\"",
    ),
    // ---- Call begin (reference body tokens) -------------------------------------------------
    t(
        "callid",
        C::CallBegin,
        T::String,
        "CallID - Unique Identifier of call",
        "\"093cc03c.e6a4.6ac6.978f.740b10afeaca\"",
    ),
    t(
        "session_id",
        C::CallBegin,
        T::String,
        "Session ID - ID for the users session",
        "\"5da13c4f-753f-448a-81a1-12456785be20\"",
    ),
    t("tracking", C::CallBegin, T::Phone, "Tracking - The Tracking number dialed", "\"7774839229\""),
    t("ani", C::CallBegin, T::Phone, "ANI - Telephone number of person calling", "\"7776734736\""),
    t(
        "call_start_time",
        C::CallBegin,
        T::Timestamp,
        "Call Start Time - The start time of call (Default: 24 hour GMT)",
        "\"2019-03-28T00:05:00.000Z\"",
    ),
    t("repeat_caller", C::CallBegin, T::Integer, "Repeat Caller - 1 (repeat caller) or 0", "1"),
    t("campaign_name", C::CallBegin, T::String, "Campaign Name - Campaign Name", "\"Sales Campaign\""),
    t("ani_is_valid", C::CallBegin, T::Integer, "Is Valid - 1 (valid ANI) or 0", "1"),
    t(
        "ani_line_type",
        C::CallBegin,
        T::String,
        "Line Type - Caller's line type (Mobile/NonFixedVOIP/Landline/TollFree/FixedVOIP)",
        "\"Mobile\"",
    ),
    t(
        "ani_carrier",
        C::CallBegin,
        T::String,
        "Carrier - Caller's Carrier (e.g. ATT, Verizon Wireless, T-Mobile USA)",
        "\"Verizon Wireless\"",
    ),
    t("ani_full_name", C::CallBegin, T::String, "Full Name - Caller's Full Name", "\"Freddy Krueger\""),
    t("ani_first_name", C::CallBegin, T::String, "First Name - Caller's First Name", "\"Freddy\""),
    t("ani_middle_name", C::CallBegin, T::String, "Middle Name - Caller's Middle Name", "\"Charles\""),
    t("ani_last_name", C::CallBegin, T::String, "Last Name - Caller's Last Name", "\"Krueger\""),
    t(
        "ani_type",
        C::CallBegin,
        T::String,
        "Type - Caller's Home Type (Single Family or Multi Family)",
        "\"Single Family\"",
    ),
    t(
        "ani_street_line_1",
        C::CallBegin,
        T::String,
        "Street Line 1 - Caller's Address Line 1",
        "\"1428 Elm Street\"",
    ),
    t("ani_street_line_2", C::CallBegin, T::String, "Street Line 2 - Caller's Address Line 2", "\"Apt 2\""),
    t("ani_city", C::CallBegin, T::String, "City - Caller's City Name", "\"Springwood\""),
    t("ani_zip", C::CallBegin, T::String, "ZIP - Caller's Zip Code", "\"50035\""),
    t("ani_zip4", C::CallBegin, T::String, "ZIP4 - Caller's Zip plus 4", "\"1001\""),
    t("ani_state", C::CallBegin, T::String, "State - Caller's State Name", "\"Ohio\""),
    t("ani_country_code", C::CallBegin, T::String, "Country Code - Caller's Country Code", "\"US\""),
    t("ani_street_number", C::CallBegin, T::String, "Street Number - Caller's Street Number", "\"1428\""),
    t("ani_street_name", C::CallBegin, T::String, "Street Name - Caller's Street Name", "\"Elm\""),
    t("ani_street_type", C::CallBegin, T::String, "Street Type - Caller's Street Type", "\"St\""),
    t(
        "ani_updated_at",
        C::CallBegin,
        T::Timestamp,
        "Updated At - When the caller information was last looked up",
        "\"2020-10-13T15:15:12.000Z\"",
    ),
    t(
        "tags",
        C::CallBegin,
        T::Object,
        "Tags - Data used to identify and group campaigns (Nested object)",
        "{\"region\":\"south\"}",
    ),
    // ---- Call begin (call-log fields, IVR) ------------------------------------------------------
    t(
        "call_sid",
        C::CallBegin,
        T::String,
        "Call SID - The carrier's identifier of the call",
        "\"CA5f1d3c9e8b7a6f5e4d3c2b1a0f9e8d7c\"",
    ),
    t("company_id", C::CallBegin, T::String, "Company ID - The company the call belongs to", "\"comp_8841\""),
    t("ai_agent_id", C::CallBegin, T::String, "AI Agent ID - The AI agent handling the call", "\"agent_sales_01\""),
    t("call_from", C::CallBegin, T::Phone, "Call From - Number the call was placed from", "\"7776734736\""),
    t("call_to", C::CallBegin, T::Phone, "Call To - Number the call was placed to", "\"7774839229\""),
    t(
        "direction",
        C::CallBegin,
        T::String,
        "Call Direction - inbound, outbound or click_to_call",
        "\"inbound\"",
    ),
    t(
        "dynamic_variables",
        C::CallBegin,
        T::Object,
        "Dynamic Variables - Variables passed to the call (Nested object)",
        "{\"customer_name\":\"Freddy\",\"service_type\":\"oil change\"}",
    ),
    t("created_at", C::CallBegin, T::Timestamp, "Created At - When the call record was created", "\"2019-03-28T00:04:58.000Z\""),
    t("started_at", C::CallBegin, T::Timestamp, "Started At - When the call started", "\"2019-03-28T00:05:00.000Z\""),
    t("ivr_option", C::CallBegin, T::String, "IVR Option - What the caller pressed in the IVR menu", "\"1\""),
    t("ivr_label", C::CallBegin, T::String, "IVR Label - Name of the IVR option the caller chose", "\"Sales\""),
    // ---- Call end (reference body tokens) ------------------------------------------------------
    t("dialed_time", C::CallEnd, T::Integer, "Dialed Time - Full Duration including dial time (seconds)", "36"),
    t("answered_time", C::CallEnd, T::Integer, "Answered Time - Duration of connection time (seconds)", "29"),
    t("dialstatus", C::CallEnd, T::String, "DialStatus - Did remote party answer or not", "\"ANSWER\""),
    t(
        "call_end_time",
        C::CallEnd,
        T::Timestamp,
        "Call End Time - The end time of call (Default: 24 hour GMT)",
        "\"2019-03-28T00:05:30.000Z\"",
    ),
    t(
        "prompt_responses",
        C::CallEnd,
        T::Array,
        "Treatment Response - Call Treatment Flow of consumer (list of {question, question_link, response})",
        "[{\"question\":\"one\",\"question_link\":\"http://app.example.com/prompts-qa/audio/-1/94f17d142e0e861bfa34.wav\",\"response\":\"1\"}]",
    ),
    t("question", C::CallEnd, T::String, "Question Name - Name of the call treatment prompt", "\"one\""),
    t(
        "question_link",
        C::CallEnd,
        T::Url,
        "Link to audio file of the call treatment prompt",
        "\"http://app.example.com/prompts-qa/audio/-1/94f17d142e0e861bfa34.wav\"",
    ),
    t("response", C::CallEnd, T::String, "What the caller pressed", "\"1\""),
    t(
        "rec_audiourl",
        C::CallEnd,
        T::Url,
        "Audio URL - Audio Recording in MONO MP3 Format",
        "\"https://audio.example.com/MP3/202110/demo.e123.4d3c.41de.123468.mp3\"",
    ),
    t(
        "rec_audiowavurl",
        C::CallEnd,
        T::Url,
        "Audio URL - Audio Recording in Stereo WAV Format",
        "\"https://audio.example.com/MP3/202110/demo.e123.4d3c.41de.123468.wav\"",
    ),
    t("ring_count", C::CallEnd, T::Integer, "Ring Count - Count of Rings before Answer", "4"),
    // ---- Call end (call-log fields) -------------------------------------------------------------
    t("call_duration", C::CallEnd, T::Integer, "Call Duration - Length of the call in seconds", "36"),
    t(
        "call_status",
        C::CallEnd,
        T::String,
        "Call Status - Final status of the call (completed, busy, no-answer, failed, canceled)",
        "\"completed\"",
    ),
    t("call_rating", C::CallEnd, T::Integer, "Call Rating - Quality rating of the call (1-5)", "5"),
    t(
        "call_summary",
        C::CallEnd,
        T::String,
        "Call Summary - AI-written summary of the call",
        "\"Caller asked about an oil change and booked a service appointment for tomorrow at 3 PM.\"",
    ),
    t(
        "recording_url",
        C::CallEnd,
        T::Url,
        "Recording URL - Link to the call recording",
        "\"https://audio.example.com/MP3/202110/demo.e123.4d3c.41de.123468.mp3\"",
    ),
    t(
        "transcript",
        C::CallEnd,
        T::String,
        "Transcript - Full transcript of the call",
        "\"Agent: Thanks for calling, how can I help?\\nCaller: I'd like to book an oil change.\"",
    ),
    t(
        "sentiment",
        C::CallEnd,
        T::String,
        "Sentiment Analysis - Overall caller sentiment (positive, neutral, negative)",
        "\"positive\"",
    ),
    t("ended_at", C::CallEnd, T::Timestamp, "Ended At - When the call ended", "\"2019-03-28T00:05:30.000Z\""),
    t(
        "answered_by",
        C::CallEnd,
        T::String,
        "Answered By - Who answered the call (ivr, ring_group, queue, extension, customer)",
        "\"extension\"",
    ),
    // ---- DNI -----------------------------------------------------------------------------------
    t("target", C::Dni, T::Phone, "Target - The target destination", "\"7776734700\""),
    t(
        "global_id",
        C::Dni,
        T::String,
        "Global ID - Unique user identification",
        "\"0f9cec2d1236e1234d8e123a7adff123\"",
    ),
    t(
        "landing_domain",
        C::Dni,
        T::String,
        "Landing Domain - Domain Name of website consumer landed on",
        "\"example.com\"",
    ),
    t("domain_name", C::Dni, T::String, "Domain Name - Domain Name where DNI is installed", "\"example.com\""),
    t("page_id", C::Dni, T::String, "Unique ID of the Web Page", "\"e14eb2bb-b829-4d19-bf5a-da76ccffbf4e\""),
    t(
        "page_converted_on",
        C::Dni,
        T::Url,
        "Page Converted On - The page that your customer made the call",
        "\"https://www.example.com/about_us.htm\"",
    ),
    t(
        "first_page_landed_on",
        C::Dni,
        T::Url,
        "First Page Landed On - The page that your customer first landed on your site",
        "\"https://www.example.com\"",
    ),
    t("vehicle_vin", C::Dni, T::String, "Vehicle Identifier", "\"1C6RRFFG9KN909808\""),
    t("vehicle_year", C::Dni, T::Integer, "Vehicle Year", "2019"),
    t("vehicle_make", C::Dni, T::String, "Vehicle Make", "\"Ram\""),
    t("vehicle_model", C::Dni, T::String, "Vehicle Model", "\"1500\""),
    t("referral_domain", C::Dni, T::String, "Referral Domain - Domain user was referred from", "\"facebook.com\""),
    t("medium", C::Dni, T::String, "Medium Type - Paid|Organic|Direct|Referral|Other", "\"Paid\""),
    t("utm_source", C::Dni, T::String, "UTM Source - Identifies source of traffic", "\"google\""),
    t("utm_medium", C::Dni, T::String, "UTM Medium - Specifies the medium, like social or newsletter", "\"social\""),
    t("utm_campaign", C::Dni, T::String, "UTM Campaign - Identifies the campaign the URL is part of", "\"sales\""),
    t("utm_content", C::Dni, T::String, "UTM Content - Content user is directed to", "\"123\""),
    t("keyword", C::Dni, T::String, "Keyword - Tracking", "\"air conditioning\""),
    t("gclid", C::Dni, T::String, "GCLID - Google Click ID", "\"xyz123\""),
    t("visitor_browser_family", C::Dni, T::String, "Visitors - Browser Family", "\"Firefox\""),
    t("visitor_browser_version", C::Dni, T::String, "Visitors - Browser Version", "\"79\""),
    t("visitor_device", C::Dni, T::String, "Visitors - Device", "\"Other\""),
    t("visitor_country_code", C::Dni, T::String, "Visitors - Country Code", "\"US\""),
    t("visitor_region", C::Dni, T::String, "Visitors - Region", "\"CA\""),
    t("visitor_city", C::Dni, T::String, "Visitors - City", "\"Los Angeles\""),
    t("visitor_ip_address", C::Dni, T::String, "Visitors - IP Address", "\"47.156.108.175\""),
    t("visitor_operating_system", C::Dni, T::String, "Visitors - Operating System", "\"Mac OS X\""),
    t("visitor_lat", C::Dni, T::Number, "Visitors - Latitude", "34.1535"),
    t("visitor_long", C::Dni, T::Number, "Visitors - Longitude", "-117.8457"),
    // ---- Location info -------------------------------------------------------------------------
    t("location_name", C::LocationInfo, T::String, "Location - Name", "\"Auto ID\""),
    t("location_address_line_1", C::LocationInfo, T::String, "Location - Address Line 1", "\"157 Main Street\""),
    t("location_address_line_2", C::LocationInfo, T::String, "Location - Address Line 2", "\"Apt 4\""),
    t("location_address_city", C::LocationInfo, T::String, "Location - City", "\"Los Angeles\""),
    t("location_address_zip", C::LocationInfo, T::String, "Location - Zip", "\"91741\""),
    t("location_address_state", C::LocationInfo, T::String, "Location - State", "\"CA\""),
    t("account_id", C::LocationInfo, T::String, "Account ID - Client's provided account number", "\"26627332\""),
    t("location_id", C::LocationInfo, T::String, "Location ID - Client's provided location ID", "\"3242243\""),
    t("site_id", C::LocationInfo, T::String, "AutoIDs Site Identifier", "\"4567\""),
    t("domain_id", C::LocationInfo, T::String, "AutoIDs Location Identifier", "\"1234\""),
    // ---- Contact -------------------------------------------------------------------------------
    t("contact_id", C::Contact, T::String, "Contact ID - The contact record of the call", "\"ct_20931\""),
    t("contact_first_name", C::Contact, T::String, "Contact - First Name", "\"Freddy\""),
    t("contact_last_name", C::Contact, T::String, "Contact - Last Name", "\"Krueger\""),
    t("contact_email", C::Contact, T::String, "Contact - Email", "\"freddy@example.com\""),
    t("contact_phone", C::Contact, T::Phone, "Contact - Phone Number", "\"7776734736\""),
    t("contact_company", C::Contact, T::String, "Contact - Company", "\"Elm Street Motors\""),
    t(
        "contact_custom_fields",
        C::Contact,
        T::Object,
        "Contact - Custom Fields (Nested object)",
        "{\"preferred_contact\":\"sms\",\"vehicle\":\"2019 Ram 1500\"}",
    ),
    // ---- Campaign ------------------------------------------------------------------------------
    t("campaign_id", C::Campaign, T::String, "Campaign ID - The campaign the call belongs to", "\"c-1\""),
    t(
        "campaign_status",
        C::Campaign,
        T::String,
        "Campaign Status - active, paused or completed",
        "\"active\"",
    ),
    t("campaign_quota", C::Campaign, T::Integer, "Campaign Quota - Call limit defined for the campaign", "500"),
    // ---- Agent outcome -------------------------------------------------------------------------
    t(
        "outcome",
        C::AgentOutcome,
        T::String,
        "Outcome - What the AI agent determined the call resulted in",
        "\"appointment_booked\"",
    ),
    t(
        "outcome_reason",
        C::AgentOutcome,
        T::String,
        "Outcome Reason - Why the agent reached that outcome",
        "\"Caller agreed to a service slot tomorrow at 3 PM\"",
    ),
    t("appointment_booked", C::AgentOutcome, T::Boolean, "Appointment Booked - Whether an appointment was booked", "true"),
    t(
        "follow_up_at",
        C::AgentOutcome,
        T::Timestamp,
        "Follow Up At - When to follow up with the contact",
        "\"2019-03-29T15:00:00.000Z\"",
    ),
    t(
        "agent_task_status",
        C::AgentOutcome,
        T::String,
        "Agent Task Status - Whether the agent completed its task",
        "\"completed\"",
    ),
    t(
        "agent_feedback",
        C::AgentOutcome,
        T::String,
        "Agent Feedback - The agent's feedback on the call",
        "\"Caller was friendly and decisive.\"",
    ),
    t(
        "post_call_outcomes",
        C::AgentOutcome,
        T::Object,
        "Post-Call Outcomes - Outcomes extracted after the call (Nested object)",
        "{\"appointment_booked\":true,\"interest_level\":\"high\"}",
    ),
    // ---- Conversation --------------------------------------------------------------------------
    t("intent", C::Conversation, T::String, "Intent - The intent the AI identified", "\"book_appointment\""),
    t(
        "intent_confidence",
        C::Conversation,
        T::Number,
        "Intent Confidence - Confidence of the detected intent (0 to 1)",
        "0.92",
    ),
    t("entity_name", C::Conversation, T::String, "Entity Name - Name of the captured entity", "\"preferred_date\""),
    t("entity_value", C::Conversation, T::String, "Entity Value - Value of the captured entity", "\"2019-03-29\""),
    t(
        "transcript_segment",
        C::Conversation,
        T::String,
        "Transcript Segment - One utterance of the live transcript",
        "\"I'd like to book an oil change for tomorrow.\"",
    ),
    t("speaker", C::Conversation, T::String, "Speaker - Who spoke the segment (caller or agent)", "\"caller\""),
];

/// Every token, grouped by category in [`TokenCategory::ALL`] order.
pub fn catalog() -> &'static [TokenDef] {
    CATALOG
}

fn index() -> &'static HashMap<&'static str, &'static TokenDef> {
    static INDEX: OnceLock<HashMap<&'static str, &'static TokenDef>> = OnceLock::new();
    INDEX.get_or_init(|| CATALOG.iter().map(|d| (d.name, d)).collect())
}

/// Strips the placeholder wrappers a user may have typed: `%name%`, `{{ name }}`.
fn bare_name(name: &str) -> &str {
    let mut s = name.trim();
    if let Some(inner) = s.strip_prefix('%').and_then(|r| r.strip_suffix('%')) {
        s = inner.trim();
    } else if let Some(inner) = s.strip_prefix("{{").and_then(|r| r.strip_suffix("}}")) {
        s = inner.trim();
    }
    s
}

/// The definition of a token: the bare name (`ani`), the reference placeholder (`%ani%`) or
/// a template expression (`{{ ani }}`); case-insensitive.
pub fn lookup(name: &str) -> Option<&'static TokenDef> {
    let bare = bare_name(name);
    if let Some(def) = index().get(bare) {
        return Some(def);
    }
    if bare.bytes().any(|b| b.is_ascii_uppercase()) {
        return index().get(bare.to_ascii_lowercase().as_str()).copied();
    }
    None
}

/// The catalog grouped by category, categories in [`TokenCategory::ALL`] order, tokens in
/// catalog order.
pub fn by_category() -> Vec<(TokenCategory, Vec<&'static TokenDef>)> {
    TokenCategory::ALL
        .iter()
        .map(|&c| (c, CATALOG.iter().filter(|d| d.category == c).collect::<Vec<_>>()))
        .filter(|(_, defs)| !defs.is_empty())
        .collect()
}

/// data keys whose values ingest normalises: every token stored under `data.<name>` of type
/// Timestamp, Integer or Number
pub fn typed_data_fields() -> impl Iterator<Item = (&'static str, TokenType)> {
    CATALOG
        .iter()
        .filter(|d| !d.is_event_level())
        .filter(|d| matches!(d.ty, TokenType::Timestamp | TokenType::Integer | TokenType::Number))
        .map(|d| (d.name, d.ty))
}

/// Resolves a token on an event. Event-level tokens: `event_id` (event.id), `event_type`,
/// `occurred_at` (RFC3339 millis Z), `tenant_id`, `callid` and `call_id` (event.call_id; an
/// event without a call id falls back to `data`). Everything else: `event.data[name]` cloned
/// (None if absent or null). `name` may be written `%name%` as well.
pub fn token_value(event: &Event, name: &str) -> Option<Value> {
    let name = bare_name(name);
    let from_data = |key: &str| event.data.get(key).filter(|v| !v.is_null()).cloned();
    match name {
        "event_id" => Some(Value::String(event.id.clone())),
        "event_type" => Some(Value::String(event.event_type.as_str().to_string())),
        "occurred_at" => Some(Value::String(event.occurred_at.to_rfc3339_opts(SecondsFormat::Millis, true))),
        "tenant_id" => Some(Value::String(event.tenant_id.clone())),
        "callid" | "call_id" => match &event.call_id {
            Some(id) => Some(Value::String(id.clone())),
            None => from_data(name),
        },
        other => from_data(other),
    }
}

/// A realistic call.ended event built from every token's example (data filled with each
/// example parsed as JSON), id "evt_sample", tenant "sample", call_id = the callid example,
/// occurred_at a fixed time. Feeds previews and test-sends.
///
/// Envelope tokens (`event_id`, `event_type`, `occurred_at`, `tenant_id`, `callid`,
/// `call_id`) live on the event itself, not in `data`, exactly as on real events.
pub fn sample_event() -> Event {
    let mut data = Map::new();
    for def in CATALOG.iter().filter(|d| !d.is_event_level()) {
        data.insert(def.name.to_string(), def.example_value());
    }
    let call_id = match lookup("callid").map(TokenDef::example_value) {
        Some(Value::String(s)) => s,
        _ => "093cc03c.e6a4.6ac6.978f.740b10afeaca".to_string(),
    };
    Event {
        id: "evt_sample".to_string(),
        event_type: EventType::CallEnded,
        // The call_end_time example: the moment the sample call hung up.
        occurred_at: Utc.with_ymd_and_hms(2019, 3, 28, 0, 5, 30).single().unwrap_or_default(),
        tenant_id: "sample".to_string(),
        call_id: Some(call_id),
        data,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::collections::HashSet;

    /// Every body token of reference 004, spelled out so a missing one fails the test.
    const REFERENCE_004: &[&str] = &[
        "callid",
        "session_id",
        "dialed_time",
        "answered_time",
        "dialstatus",
        "tracking",
        "ani",
        "call_start_time",
        "call_end_time",
        "target",
        "global_id",
        "landing_domain",
        "repeat_caller",
        "prompt_responses",
        "question",
        "question_link",
        "response",
        "domain_name",
        "campaign_name",
        "rec_audiourl",
        "rec_audiowavurl",
        "ani_is_valid",
        "ani_line_type",
        "ani_carrier",
        "ani_full_name",
        "ani_first_name",
        "ani_middle_name",
        "ani_last_name",
        "ani_type",
        "ani_street_line_1",
        "ani_street_line_2",
        "ani_city",
        "ani_zip",
        "ani_zip4",
        "ani_state",
        "ani_country_code",
        "ani_street_number",
        "ani_street_name",
        "ani_street_type",
        "ani_updated_at",
        "tags",
        "location_name",
        "location_address_line_1",
        "location_address_line_2",
        "location_address_city",
        "location_address_zip",
        "location_address_state",
        "account_id",
        "location_id",
        "page_id",
        "page_converted_on",
        "first_page_landed_on",
        "vehicle_vin",
        "vehicle_year",
        "vehicle_make",
        "vehicle_model",
        "referral_domain",
        "medium",
        "utm_source",
        "utm_medium",
        "utm_campaign",
        "utm_content",
        "keyword",
        "gclid",
        "ring_count",
        "site_id",
        "domain_id",
        "visitor_browser_family",
        "visitor_browser_version",
        "visitor_device",
        "visitor_country_code",
        "visitor_region",
        "visitor_city",
        "visitor_ip_address",
        "visitor_operating_system",
        "visitor_lat",
        "visitor_long",
    ];

    /// The reference's category of each 004 token (call_begin, call_end, dni, location_info).
    fn reference_category(name: &str) -> TokenCategory {
        const CALL_END: &[&str] = &[
            "dialed_time",
            "answered_time",
            "dialstatus",
            "call_end_time",
            "prompt_responses",
            "question",
            "question_link",
            "response",
            "rec_audiourl",
            "rec_audiowavurl",
            "ring_count",
        ];
        const DNI_EXTRA: &[&str] = &[
            "target",
            "global_id",
            "landing_domain",
            "domain_name",
            "page_id",
            "page_converted_on",
            "first_page_landed_on",
            "referral_domain",
            "medium",
            "keyword",
            "gclid",
        ];
        const LOCATION_EXTRA: &[&str] = &["account_id", "location_id", "site_id", "domain_id"];
        if CALL_END.contains(&name) {
            TokenCategory::CallEnd
        } else if DNI_EXTRA.contains(&name)
            || name.starts_with("vehicle_")
            || name.starts_with("utm_")
            || name.starts_with("visitor_")
        {
            TokenCategory::Dni
        } else if LOCATION_EXTRA.contains(&name) || name.starts_with("location_") {
            TokenCategory::LocationInfo
        } else {
            TokenCategory::CallBegin
        }
    }

    #[test]
    fn every_reference_token_is_present_with_its_category() {
        assert_eq!(REFERENCE_004.len(), 77);
        for name in REFERENCE_004 {
            let def = lookup(name).unwrap_or_else(|| panic!("token `{name}` missing from the catalog"));
            assert_eq!(def.name, *name);
            assert_eq!(def.category, reference_category(name), "category of `{name}`");
        }
    }

    #[test]
    fn requested_extra_tokens_are_present() {
        let extras = [
            ("call_sid", None),
            ("company_id", None),
            ("campaign_id", Some(TokenCategory::Campaign)),
            ("ai_agent_id", None),
            ("contact_id", Some(TokenCategory::Contact)),
            ("call_from", None),
            ("call_to", None),
            ("call_duration", None),
            ("call_status", None),
            ("direction", Some(TokenCategory::CallBegin)),
            ("call_rating", None),
            ("call_summary", None),
            ("recording_url", None),
            ("transcript", None),
            ("sentiment", None),
            ("agent_task_status", None),
            ("agent_feedback", None),
            ("dynamic_variables", None),
            ("post_call_outcomes", None),
            ("created_at", None),
            ("started_at", None),
            ("ended_at", None),
            ("contact_first_name", Some(TokenCategory::Contact)),
            ("contact_last_name", Some(TokenCategory::Contact)),
            ("contact_email", Some(TokenCategory::Contact)),
            ("contact_phone", Some(TokenCategory::Contact)),
            ("contact_company", Some(TokenCategory::Contact)),
            ("contact_custom_fields", Some(TokenCategory::Contact)),
            ("outcome", Some(TokenCategory::AgentOutcome)),
            ("outcome_reason", Some(TokenCategory::AgentOutcome)),
            ("appointment_booked", Some(TokenCategory::AgentOutcome)),
            ("follow_up_at", Some(TokenCategory::AgentOutcome)),
            ("intent", Some(TokenCategory::Conversation)),
            ("intent_confidence", Some(TokenCategory::Conversation)),
            ("entity_name", Some(TokenCategory::Conversation)),
            ("entity_value", Some(TokenCategory::Conversation)),
            ("transcript_segment", Some(TokenCategory::Conversation)),
            ("speaker", Some(TokenCategory::Conversation)),
            ("campaign_status", Some(TokenCategory::Campaign)),
            ("campaign_quota", Some(TokenCategory::Campaign)),
            ("ivr_option", Some(TokenCategory::CallBegin)),
            ("ivr_label", Some(TokenCategory::CallBegin)),
            ("answered_by", Some(TokenCategory::CallEnd)),
            ("event_id", Some(TokenCategory::Event)),
            ("event_type", Some(TokenCategory::Event)),
            ("occurred_at", Some(TokenCategory::Event)),
            ("tenant_id", Some(TokenCategory::Event)),
            ("call_id", Some(TokenCategory::Event)),
        ];
        for (name, category) in extras {
            let def = lookup(name).unwrap_or_else(|| panic!("token `{name}` missing from the catalog"));
            if let Some(c) = category {
                assert_eq!(def.category, c, "category of `{name}`");
            }
        }
    }

    #[test]
    fn types_follow_the_conventions() {
        let expect = [
            ("dialed_time", TokenType::Integer),
            ("answered_time", TokenType::Integer),
            ("ring_count", TokenType::Integer),
            ("call_duration", TokenType::Integer),
            ("repeat_caller", TokenType::Integer),
            ("ani_is_valid", TokenType::Integer),
            ("campaign_quota", TokenType::Integer),
            ("call_start_time", TokenType::Timestamp),
            ("call_end_time", TokenType::Timestamp),
            ("created_at", TokenType::Timestamp),
            ("started_at", TokenType::Timestamp),
            ("ended_at", TokenType::Timestamp),
            ("follow_up_at", TokenType::Timestamp),
            ("visitor_lat", TokenType::Number),
            ("visitor_long", TokenType::Number),
            ("intent_confidence", TokenType::Number),
            ("ani", TokenType::Phone),
            ("tracking", TokenType::Phone),
            ("rec_audiourl", TokenType::Url),
            ("tags", TokenType::Object),
            ("dynamic_variables", TokenType::Object),
            ("post_call_outcomes", TokenType::Object),
            ("prompt_responses", TokenType::Array),
            ("appointment_booked", TokenType::Boolean),
        ];
        for (name, ty) in expect {
            assert_eq!(lookup(name).unwrap().ty, ty, "type of `{name}`");
        }
    }

    #[test]
    fn names_are_unique_and_lowercase() {
        let mut seen = HashSet::new();
        for def in catalog() {
            assert!(seen.insert(def.name), "duplicate token `{}`", def.name);
            assert!(
                !def.name.is_empty()
                    && def.name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
                "token name `{}` is not snake_case",
                def.name
            );
            assert!(!def.description.is_empty(), "`{}` has no description", def.name);
        }
        assert_eq!(index().len(), catalog().len());
    }

    #[test]
    fn catalog_is_grouped_in_category_order() {
        let order = |c: TokenCategory| TokenCategory::ALL.iter().position(|x| *x == c).unwrap();
        // Grouped: once a category is left, it never comes back.
        let mut finished = HashSet::new();
        let mut current = None;
        for def in catalog() {
            if current != Some(def.category) {
                if let Some(prev) = current {
                    finished.insert(prev);
                }
                assert!(!finished.contains(&def.category), "`{}` is out of its category group", def.name);
                current = Some(def.category);
            }
        }
        let groups = by_category();
        assert_eq!(groups.len(), TokenCategory::ALL.len());
        assert!(groups.windows(2).all(|w| order(w[0].0) < order(w[1].0)));
        assert_eq!(groups.iter().map(|(_, d)| d.len()).sum::<usize>(), catalog().len());
        for (c, defs) in &groups {
            assert!(defs.iter().all(|d| d.category == *c));
        }
    }

    #[test]
    fn every_example_parses_and_matches_its_type() {
        for def in catalog() {
            let v: Value = serde_json::from_str(def.example)
                .unwrap_or_else(|e| panic!("example of `{}` is not JSON: {e}", def.name));
            let ok = match def.ty {
                TokenType::String => v.is_string(),
                TokenType::Phone => {
                    v.as_str().is_some_and(|s| !s.is_empty() && s.chars().all(|c| c.is_ascii_digit() || c == '+'))
                }
                TokenType::Url => v.as_str().is_some_and(|s| s.starts_with("http://") || s.starts_with("https://")),
                TokenType::Timestamp => v.as_str().is_some_and(|s| {
                    chrono::DateTime::parse_from_rfc3339(s).is_ok()
                        // Already in the form ingest normalises to.
                        && crate::event::parse_timestamp(&v)
                            .map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true) == s)
                            .unwrap_or(false)
                }),
                TokenType::Integer => v.is_i64(),
                TokenType::Number => v.is_number(),
                TokenType::Boolean => v.is_boolean(),
                TokenType::Object => v.is_object(),
                TokenType::Array => v.is_array(),
            };
            assert!(ok, "example {} of `{}` is not a {}", def.example, def.name, def.ty);
            assert_eq!(def.example_value(), v);
        }
        // 0/1 flags
        assert_eq!(lookup("repeat_caller").unwrap().example_value(), json!(1));
        assert_eq!(lookup("ani_is_valid").unwrap().example_value(), json!(1));
        // prompt_responses items carry question, question_link, response
        let pr = lookup("prompt_responses").unwrap().example_value();
        let item = &pr.as_array().unwrap()[0];
        for key in ["question", "question_link", "response"] {
            assert_eq!(item[key], lookup(key).unwrap().example_value(), "prompt_responses[0].{key}");
        }
    }

    #[test]
    fn lookup_accepts_placeholder_forms_and_case() {
        assert_eq!(lookup("ani").unwrap().name, "ani");
        assert_eq!(lookup("%ani%").unwrap().name, "ani");
        assert_eq!(lookup(" %ANI% ").unwrap().name, "ani");
        assert_eq!(lookup("{{ callid }}").unwrap().name, "callid");
        assert_eq!(lookup("Call_Start_Time").unwrap().category, TokenCategory::CallBegin);
        assert!(lookup("nope").is_none());
        assert!(lookup("%%").is_none());
        assert!(lookup("").is_none());
    }

    #[test]
    fn typed_data_fields_cover_timestamps_and_numbers_in_data_only() {
        let fields: HashMap<_, _> = typed_data_fields().collect();
        assert_eq!(fields.get("call_start_time"), Some(&TokenType::Timestamp));
        assert_eq!(fields.get("ring_count"), Some(&TokenType::Integer));
        assert_eq!(fields.get("visitor_lat"), Some(&TokenType::Number));
        assert!(!fields.contains_key("occurred_at"), "envelope tokens are not in data");
        assert!(!fields.contains_key("ani"));
        let expected = catalog()
            .iter()
            .filter(|d| !d.is_event_level())
            .filter(|d| matches!(d.ty, TokenType::Timestamp | TokenType::Integer | TokenType::Number))
            .count();
        assert_eq!(fields.len(), expected);
    }

    #[test]
    fn sample_event_round_trips_through_validation() {
        let sample = sample_event();
        assert_eq!(sample.id, "evt_sample");
        assert_eq!(sample.tenant_id, "sample");
        assert_eq!(sample.event_type, EventType::CallEnded);
        assert_eq!(sample.call_id.as_deref(), Some("093cc03c.e6a4.6ac6.978f.740b10afeaca"));
        let value = serde_json::to_value(&sample).unwrap();
        let parsed = crate::event::event_from_value(value).expect("sample event validates");
        assert_eq!(parsed, sample, "ingest normalisation leaves the sample unchanged");
        for def in catalog() {
            if def.is_event_level() {
                assert!(!sample.data.contains_key(def.name), "`{}` belongs to the envelope", def.name);
            } else {
                assert_eq!(sample.data.get(def.name), Some(&def.example_value()), "sample data `{}`", def.name);
            }
            let v = token_value(&sample, def.name).unwrap_or_else(|| panic!("`{}` resolves on the sample", def.name));
            assert_eq!(v, def.example_value(), "sample value of `{}` matches its example", def.name);
        }
    }

    #[test]
    fn token_value_resolves_envelope_and_data() {
        let event = crate::event::event_from_value(json!({
            "id": "e-1", "type": "hangup", "occurred_at": "2026-01-01T12:00:00+02:00",
            "tenant_id": "acme", "call_id": "c-42",
            "data": {"ani": "7776734736", "ring_count": "4", "tags": {"region": "south"}, "gclid": null}
        }))
        .unwrap();
        assert_eq!(token_value(&event, "callid"), Some(json!("c-42")));
        assert_eq!(token_value(&event, "call_id"), Some(json!("c-42")));
        assert_eq!(token_value(&event, "%callid%"), Some(json!("c-42")));
        assert_eq!(token_value(&event, "event_id"), Some(json!("e-1")));
        assert_eq!(token_value(&event, "event_type"), Some(json!("call.ended")));
        assert_eq!(token_value(&event, "occurred_at"), Some(json!("2026-01-01T10:00:00.000Z")));
        assert_eq!(token_value(&event, "tenant_id"), Some(json!("acme")));
        assert_eq!(token_value(&event, "ani"), Some(json!("7776734736")));
        assert_eq!(token_value(&event, "ring_count"), Some(json!(4)));
        assert_eq!(token_value(&event, "tags"), Some(json!({"region": "south"})));
        assert_eq!(token_value(&event, "gclid"), None, "null resolves to None");
        assert_eq!(token_value(&event, "keyword"), None, "absent resolves to None");

        let campaign = crate::event::event_from_value(json!({
            "id": "e-2", "type": "campaign.paused", "occurred_at": 0, "tenant_id": "acme",
            "data": {"campaign_id": "c-1"}
        }))
        .unwrap();
        assert_eq!(token_value(&campaign, "callid"), None);
        assert_eq!(token_value(&campaign, "campaign_id"), Some(json!("c-1")));
    }

    #[test]
    fn enums_serialise_as_their_names() {
        for c in TokenCategory::ALL {
            assert_eq!(serde_json::to_value(c).unwrap(), json!(c.as_str()));
        }
        for ty in [
            TokenType::String,
            TokenType::Integer,
            TokenType::Number,
            TokenType::Boolean,
            TokenType::Timestamp,
            TokenType::Phone,
            TokenType::Url,
            TokenType::Object,
            TokenType::Array,
        ] {
            assert_eq!(serde_json::to_value(ty).unwrap(), json!(ty.as_str()));
        }
        let def = serde_json::to_value(lookup("ani").unwrap()).unwrap();
        assert_eq!(def["category"], "call_begin");
        assert_eq!(def["ty"], "phone");
        assert_eq!(def["example"], "\"7776734736\"");
    }
}
