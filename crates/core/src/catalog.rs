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
//!
//! Resolving tokens on an event, and the sample event, live in [`crate::tokens`]; this module
//! depends on nothing else in the crate, so event validation can use the types it lists.

use serde::Serialize;
use serde_json::Value;
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

pub(crate) static CATALOG: &[TokenDef] = &[
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

pub(crate) fn index() -> &'static HashMap<&'static str, &'static TokenDef> {
    static INDEX: OnceLock<HashMap<&'static str, &'static TokenDef>> = OnceLock::new();
    INDEX.get_or_init(|| CATALOG.iter().map(|d| (d.name, d)).collect())
}

/// Strips the placeholder wrappers a user may have typed: `%name%`, `{{ name }}`.
pub(crate) fn bare_name(name: &str) -> &str {
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
