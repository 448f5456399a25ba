//! Expression filters: a webhook trigger may carry a CEL expression (Common Expression
//! Language, evaluated by the `cel-interpreter` crate) that must hold for an event to match,
//! AND-combined with the trigger's list filters.
//!
//! ```text
//! call.duration > 30 && call.status == "answered"
//!   && campaign.name.startsWith("Sales") && !(tags.region == "north")
//! ```
//!
//! # Variables
//! Every variable is a map and is always present (possibly empty), so a well-formed expression
//! never refers to an undeclared name at run time:
//!
//! | variable | holds |
//! |---|---|
//! | `event` | `id`, `type` (canonical name, `call.ended`), `occurred_at` (RFC 3339 UTC), `tenant_id` |
//! | `call` | `id` (the call id), every data point named `call_<x>` as `<x>` (`call.duration`, `call.status`, `call.from`, `call.to`, `call.sid`, `call.rating`, …), and `direction`, `tracking`, `ani`, `answered_by`, `dialstatus` |
//! | `campaign` | every `campaign_<x>` as `<x>`: `campaign.id`, `campaign.name`, `campaign.status`, `campaign.quota` |
//! | `contact` | every `contact_<x>`: `contact.email`, `contact.company`, … |
//! | `location` | every `location_<x>`: `location.name`, `location.id`, … |
//! | `visitor` | every `visitor_<x>`: `visitor.city`, `visitor.region`, … |
//! | `utm` | every `utm_<x>`: `utm.source`, `utm.campaign`, … |
//! | `ivr` | `ivr.option`, `ivr.label` |
//! | `tags` | the `tags` object (`tags.region`) |
//! | `data` | the event's whole `data` object under the token catalog's names (`data.call_duration`, `data.tags.region`) and any other key a switch sent |
//!
//! Values keep their JSON types: integers are CEL `int`, other numbers `double`, timestamps
//! and phone numbers strings, objects maps, arrays lists.
//!
//! # Checked at configuration time
//! [`ExpressionFilter::compile`] parses the expression and checks it against the catalog: an
//! unknown variable, an unknown field of a grouped variable (`call.duraton`), a function
//! hookmesh does not offer, a comparison between a string and a number data point, a
//! comprehension over a scalar, or a result that is not a boolean are refused with the line
//! and column (1-based) of the offending name. Unknown keys are allowed under `data` and
//! `tags`, which carry whatever the switch sent. Finally the expression is evaluated on the
//! catalog's sample event, which catches the type errors the static check cannot see.
//!
//! # At run time
//! A data point the event does not carry makes the expression fail, and a failing expression
//! does not match (it never routes by accident); guard optional data with
//! `has(call.status) && call.status == "answered"`. The logical operators follow CEL's rules
//! for errors, in either order of their operands: `error || true` is `true` and
//! `error && false` is `false` (hookmesh evaluates `&&`, `||`, `!` and `?:` itself; the
//! `cel-interpreter` crate alone stops at the first error).
//!
//! # Cost bound
//! - the expression is at most [`MAX_EXPRESSION_LEN`] bytes, nests brackets at most
//!   [`MAX_NESTING`] deep and holds at most [`MAX_OPERATORS`] operators (checked
//!   before parsing, so the recursion of the parser, the check and the interpreter stays far
//!   inside a worker thread's stack);
//! - comprehension macros (`all`, `exists`, `exists_one`, `map`, `filter`) may not nest, and
//!   one evaluates over at most [`MAX_COMPREHENSION_ITEMS`] items: an event holding a longer
//!   list or a larger map does not match an expression with a comprehension (refused before
//!   evaluating, so a comprehension costs at most that many steps of a bounded body);
//! - without regex (`matches` is not offered) and without loops beyond the comprehensions,
//!   evaluation is linear in the expression's size times the event's size (256 KiB);
//! - a panic inside the interpreter is caught and counts as "does not match".

use crate::catalog::{catalog, TokenType};
use crate::error::ValidationError;
use crate::event::Event;
use cel_interpreter::objects::{Key, Map as CelMap};
use cel_interpreter::{Context, ExecutionError, Value as Cel};
use cel_parser::ast::{operators, EntryExpr, Expr, IdedExpr};
use cel_parser::reference::Val;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// Longest accepted expression, in bytes.
pub const MAX_EXPRESSION_LEN: usize = 1024;
/// Deepest bracket nesting (`(`, `[`, `{`) accepted.
pub const MAX_NESTING: usize = 24;
/// Most operators (`&&`, `||`, `!`, comparisons, arithmetic) an expression may hold: the
/// parser, the check and the evaluation recurse once per operator of a chain, and this keeps
/// the deepest chain far inside a 2 MiB thread stack (an unoptimised build overflows one at
/// about 240 chained `+`).
pub const MAX_OPERATORS: usize = 100;
/// Most items of a list or map a comprehension may run over.
pub const MAX_COMPREHENSION_ITEMS: usize = 1000;

/// The grouped variables: name, data key prefix, and extra data keys it carries under their
/// own name.
const GROUPS: &[(&str, &str, &[&str])] = &[
    ("call", "call_", &["direction", "tracking", "ani", "answered_by", "dialstatus"]),
    ("campaign", "campaign_", &[]),
    ("contact", "contact_", &[]),
    ("location", "location_", &[]),
    ("visitor", "visitor_", &[]),
    ("utm", "utm_", &[]),
    ("ivr", "ivr_", &[]),
];

/// Variables whose fields are open (anything the switch sent).
const OPEN: &[&str] = &["data", "tags"];

/// Functions and macros an expression may call.
const FUNCTIONS: &[&str] = &[
    "size",
    "contains",
    "startsWith",
    "endsWith",
    "max",
    "min",
    "string",
    "int",
    "uint",
    "double",
    "has",
    "all",
    "exists",
    "exists_one",
    "existsOne",
    "map",
    "filter",
];

/// What the static check knows about a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ty {
    Int,
    Double,
    String,
    Bool,
    Map,
    List,
    Null,
    /// Unknown until run time.
    Dyn,
}

impl Ty {
    fn of_token(t: TokenType) -> Ty {
        match t {
            TokenType::Integer => Ty::Int,
            TokenType::Number => Ty::Double,
            TokenType::Boolean => Ty::Bool,
            TokenType::Object => Ty::Map,
            TokenType::Array => Ty::List,
            TokenType::String | TokenType::Timestamp | TokenType::Phone | TokenType::Url => Ty::String,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Ty::Int => "int",
            Ty::Double => "double",
            Ty::String => "string",
            Ty::Bool => "bool",
            Ty::Map => "map",
            Ty::List => "list",
            Ty::Null => "null",
            Ty::Dyn => "dyn",
        }
    }

    fn numeric(self) -> bool {
        matches!(self, Ty::Int | Ty::Double)
    }

    /// Whether two known types can be compared or combined.
    fn compatible(self, other: Ty) -> bool {
        self == Ty::Dyn || other == Ty::Dyn || self == other || (self.numeric() && other.numeric())
    }
}

/// The fields each grouped variable offers, with their types (from the token catalog).
fn schema() -> &'static HashMap<&'static str, BTreeMap<String, Ty>> {
    static SCHEMA: std::sync::OnceLock<HashMap<&'static str, BTreeMap<String, Ty>>> = std::sync::OnceLock::new();
    SCHEMA.get_or_init(|| {
        let mut s: HashMap<&'static str, BTreeMap<String, Ty>> = HashMap::new();
        let event = s.entry("event").or_default();
        for f in ["id", "type", "occurred_at", "tenant_id"] {
            event.insert(f.to_string(), Ty::String);
        }
        for (group, prefix, extra) in GROUPS {
            let fields = s.entry(group).or_default();
            for def in catalog() {
                if let Some(rest) = def.name.strip_prefix(prefix) {
                    fields.insert(rest.to_string(), Ty::of_token(def.ty));
                }
                if extra.contains(&def.name) {
                    fields.insert(def.name.to_string(), Ty::of_token(def.ty));
                }
            }
        }
        s.get_mut("call").expect("call group").insert("id".to_string(), Ty::String);
        s
    })
}

fn variable_names() -> String {
    let mut names: Vec<&str> = vec!["event"];
    names.extend(GROUPS.iter().map(|g| g.0));
    names.extend(OPEN);
    names.join(", ")
}

/// A parsed and checked trigger expression, ready to evaluate.
#[derive(Debug)]
pub struct ExpressionFilter {
    /// The parsed expression; evaluated by [`eval_node`].
    ast: IdedExpr,
    source: String,
    has_comprehension: bool,
    /// What comprehensions run over, where that is a path from a variable
    /// (`data.prompt_responses`): checked to be a list or map before evaluating, because the
    /// interpreter panics on a comprehension over anything else.
    ranges: Vec<Vec<String>>,
}

/// Why an expression could not be evaluated on an event (the event does not match).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EvalError {
    #[error("{0}")]
    Execution(String),
    #[error("the expression evaluated to {0}, not a boolean")]
    NotBool(String),
    #[error(
        "the event holds a list or map of more than {MAX_COMPREHENSION_ITEMS} items, too many for a comprehension"
    )]
    TooLarge,
    #[error("the expression interpreter failed: {0}")]
    Panic(String),
}

/// 1-based line and column of byte offset `at` in `src`.
fn line_col(src: &str, at: usize) -> (usize, usize) {
    let before = &src[..at.min(src.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

fn at(src: &str, offset: usize, message: impl std::fmt::Display) -> ValidationError {
    let (line, col) = line_col(src, offset);
    ValidationError::new("", format!("line {line}, column {col}: {message}"))
}

/// Identifier-like tokens of `src` outside string literals: (byte offset, text, preceded by `.`).
fn words(src: &str) -> Vec<(usize, &str, bool)> {
    let b = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    let mut after_dot = false;
    while i < b.len() {
        let c = b[i];
        if c == b'"' || c == b'\'' {
            // Skip a string literal (triple quotes and escapes included).
            let triple = b[i..].starts_with(&[c, c, c]);
            let q = if triple { 3 } else { 1 };
            i += q;
            while i < b.len() {
                if b[i] == b'\\' {
                    i += 2;
                    continue;
                }
                if b[i] == c && (!triple || b[i..].starts_with(&[c, c, c])) {
                    i += q;
                    break;
                }
                i += 1;
            }
            after_dot = false;
            continue;
        }
        if c.is_ascii_alphabetic() || c == b'_' {
            let start = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                i += 1;
            }
            out.push((start, &src[start..i], after_dot));
            after_dot = false;
            continue;
        }
        if c.is_ascii_digit() {
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'.') {
                i += 1;
            }
            after_dot = false;
            continue;
        }
        if !c.is_ascii_whitespace() {
            after_dot = c == b'.';
        }
        i += 1;
    }
    out
}

/// Where `name` first appears (as a field after `.` when `field`), else the start.
fn locate(src: &str, name: &str, field: bool) -> usize {
    words(src).into_iter().find(|(_, w, dot)| *w == name && (*dot == field || !field)).map_or(0, |(o, _, _)| o)
}

/// Where the path `a.b.c` first appears, at its last name; else where its last name does.
fn locate_path(src: &str, path: &[String]) -> usize {
    let w = words(src);
    let n = path.len();
    (0..w.len().saturating_sub(n - 1))
        .find(|&i| path.iter().enumerate().all(|(j, p)| w[i + j].1 == p && (j == 0 && !w[i].2 || j > 0 && w[i + j].2)))
        .map(|i| w[i + n - 1].0)
        .unwrap_or_else(|| locate(src, &path[n - 1], n > 1))
}

/// Deepest bracket nesting outside string literals, and where it first exceeds `limit`.
fn nesting_overflow(src: &str, limit: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut quote: Option<u8> = None;
    let b = src.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        match quote {
            Some(q) => {
                if c == b'\\' {
                    i += 1;
                } else if c == q {
                    quote = None;
                }
            }
            None => match c {
                b'"' | b'\'' => quote = Some(c),
                b'(' | b'[' | b'{' => {
                    depth += 1;
                    if depth > limit {
                        return Some(i);
                    }
                }
                b')' | b']' | b'}' => depth = depth.saturating_sub(1),
                _ => {}
            },
        }
        i += 1;
    }
    None
}

/// Where the operator past `limit` is, outside string literals (the unary `-` and `!` count
/// as well).
fn operators_overflow(src: &str, limit: usize) -> Option<usize> {
    let b = src.as_bytes();
    let mut quote: Option<u8> = None;
    let mut count = 0usize;
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if let Some(q) = quote {
            if c == b'\\' {
                i += 1;
            } else if c == q {
                quote = None;
            }
            i += 1;
            continue;
        }
        let two = b.get(i..i + 2).unwrap_or_default();
        let width = if matches!(two, b"&&" | b"||" | b"==" | b"!=" | b"<=" | b">=") {
            2
        } else if matches!(c, b'+' | b'-' | b'*' | b'/' | b'%' | b'<' | b'>' | b'!') {
            1
        } else {
            0
        };
        match c {
            b'"' | b'\'' => quote = Some(c),
            _ if width > 0 => {
                count += 1;
                if count > limit {
                    return Some(i);
                }
            }
            _ => {}
        }
        i += width.max(1);
    }
    None
}

/// The static check: walks the parsed expression and infers what it can.
struct Checker<'a> {
    src: &'a str,
    /// Comprehension variables in scope.
    bound: Vec<String>,
    comprehension_depth: usize,
    has_comprehension: bool,
    ranges: Vec<Vec<String>>,
}

/// `data.a.b` as `["data", "a", "b"]` when `e` is such a path from a variable.
fn path_of(e: &IdedExpr) -> Option<Vec<String>> {
    match &e.expr {
        Expr::Ident(n) => Some(vec![n.clone()]),
        Expr::Select(s) if !s.test => {
            let mut p = path_of(&s.operand)?;
            p.push(s.field.clone());
            Some(p)
        }
        _ => None,
    }
}

const MACROS: &[&str] = &["all", "exists", "exists_one", "existsOne", "map", "filter"];

impl Checker<'_> {
    fn err(&self, offset: usize, message: impl std::fmt::Display) -> ValidationError {
        at(self.src, offset, message)
    }

    fn check(&mut self, e: &IdedExpr) -> Result<Ty, ValidationError> {
        match &e.expr {
            Expr::Literal(v) => Ok(match v {
                Val::String(_) => Ty::String,
                Val::Boolean(_) => Ty::Bool,
                Val::Int(_) | Val::UInt(_) => Ty::Int,
                Val::Double(_) => Ty::Double,
                Val::Bytes(_) => Ty::Dyn,
                Val::Null => Ty::Null,
            }),
            Expr::Ident(name) => {
                if self.bound.iter().any(|b| b == name) {
                    Ok(Ty::Dyn)
                } else if name == "event" || OPEN.contains(&name.as_str()) || GROUPS.iter().any(|g| g.0 == name) {
                    Ok(Ty::Map)
                } else {
                    Err(self.err(
                        locate(self.src, name, false),
                        format!("undeclared reference to `{name}` (variables: {})", variable_names()),
                    ))
                }
            }
            Expr::Select(sel) => {
                let operand = self.check(&sel.operand)?;
                if sel.test {
                    return Ok(Ty::Bool);
                }
                let field = sel.field.as_str();
                if let Expr::Ident(var) = &sel.operand.expr {
                    if !self.bound.iter().any(|b| b == var) {
                        if var == "data" {
                            return Ok(crate::catalog::lookup(field).map_or(Ty::Dyn, |d| Ty::of_token(d.ty)));
                        }
                        if let Some(fields) = schema().get(var.as_str()) {
                            return fields.get(field).copied().ok_or_else(|| {
                                let known: Vec<&str> = fields.keys().map(String::as_str).collect();
                                self.err(
                                    locate_path(self.src, &[var.clone(), field.to_string()]),
                                    format!("`{var}` has no field `{field}` (it has: {})", known.join(", ")),
                                )
                            });
                        }
                    }
                }
                match operand {
                    Ty::Map | Ty::Dyn => Ok(Ty::Dyn),
                    other => Err(self.err(
                        locate(self.src, field, true),
                        format!("cannot select field `{field}` of a {}", other.name()),
                    )),
                }
            }
            Expr::Call(call) => self.check_call(call),
            Expr::Comprehension(c) => {
                let offset = words(self.src)
                    .into_iter()
                    .filter(|(_, w, dot)| *dot && MACROS.contains(w))
                    .nth(self.comprehension_depth)
                    .map_or(0, |(o, _, _)| o);
                if self.comprehension_depth > 0 {
                    return Err(self.err(offset, "comprehensions (all, exists, exists_one, map, filter) may not nest"));
                }
                let range = self.check(&c.iter_range)?;
                if !matches!(range, Ty::List | Ty::Map | Ty::Dyn) {
                    return Err(
                        self.err(offset, format!("a comprehension runs over a list or map, not a {}", range.name()))
                    );
                }
                self.has_comprehension = true;
                match path_of(&c.iter_range) {
                    Some(p) if !self.bound.contains(&p[0]) => self.ranges.push(p),
                    // A literal list or map, or a comprehension's result (a list): safe.
                    _ if matches!(c.iter_range.expr, Expr::List(_) | Expr::Map(_) | Expr::Comprehension(_)) => {}
                    _ => {
                        return Err(self.err(
                            offset,
                            "a comprehension runs over a list, a map or a data point (`data.prompt_responses`)",
                        ))
                    }
                }
                self.comprehension_depth += 1;
                self.bound.push(c.iter_var.clone());
                if let Some(v2) = &c.iter_var2 {
                    self.bound.push(v2.clone());
                }
                self.bound.push(c.accu_var.clone());
                let result = (|| {
                    self.check(&c.accu_init)?;
                    self.check(&c.loop_cond)?;
                    self.check(&c.loop_step)?;
                    self.check(&c.result)
                })();
                self.bound.truncate(self.bound.len() - 2 - usize::from(c.iter_var2.is_some()));
                self.comprehension_depth -= 1;
                result.map(|_| Ty::Dyn)
            }
            Expr::List(l) => {
                for item in &l.elements {
                    self.check(item)?;
                }
                Ok(Ty::List)
            }
            Expr::Map(m) => {
                for entry in &m.entries {
                    match &entry.expr {
                        EntryExpr::MapEntry(me) => {
                            self.check(&me.key)?;
                            self.check(&me.value)?;
                        }
                        EntryExpr::StructField(_) => return Err(self.err(0, "message fields are not supported")),
                    }
                }
                Ok(Ty::Map)
            }
            Expr::Struct(s) => Err(self.err(
                locate(self.src, s.type_name.rsplit('.').next().unwrap_or(&s.type_name), false),
                format!("message construction (`{}{{…}}`) is not supported", s.type_name),
            )),
            Expr::Unspecified => Err(self.err(0, "incomplete expression")),
        }
    }

    fn check_call(&mut self, call: &cel_parser::ast::CallExpr) -> Result<Ty, ValidationError> {
        let name = call.func_name.as_str();
        let args = call.args.iter().map(|a| self.check(a)).collect::<Result<Vec<Ty>, ValidationError>>()?;
        let target = call.target.as_ref().map(|t| self.check(t)).transpose()?;
        // Where to point: the first field or variable of the call's operands.
        let operand_offset = || call.args.iter().find_map(first_name).map_or(0, |p| locate_path(self.src, &p));
        let bool_operand = |t: Ty, what: &str| -> Result<(), ValidationError> {
            if matches!(t, Ty::Bool | Ty::Dyn) {
                Ok(())
            } else {
                Err(self.err(operand_offset(), format!("`{what}` needs booleans, not a {}", t.name())))
            }
        };
        match name {
            operators::LOGICAL_AND | operators::LOGICAL_OR => {
                for a in &args {
                    bool_operand(*a, if name == operators::LOGICAL_AND { "&&" } else { "||" })?;
                }
                Ok(Ty::Bool)
            }
            operators::LOGICAL_NOT => {
                bool_operand(args[0], "!")?;
                Ok(Ty::Bool)
            }
            operators::NOT_STRICTLY_FALSE => Ok(Ty::Bool),
            operators::EQUALS | operators::NOT_EQUALS => {
                let (a, b) = (args[0], args[1]);
                if !a.compatible(b) && a != Ty::Null && b != Ty::Null {
                    return Err(
                        self.err(operand_offset(), format!("cannot compare a {} with a {}", a.name(), b.name()))
                    );
                }
                Ok(Ty::Bool)
            }
            operators::LESS | operators::LESS_EQUALS | operators::GREATER | operators::GREATER_EQUALS => {
                let (a, b) = (args[0], args[1]);
                let orderable = |t: Ty| matches!(t, Ty::Int | Ty::Double | Ty::String | Ty::Dyn);
                if !a.compatible(b) || !orderable(a) || !orderable(b) {
                    return Err(
                        self.err(operand_offset(), format!("cannot order a {} against a {}", a.name(), b.name()))
                    );
                }
                Ok(Ty::Bool)
            }
            operators::ADD => {
                let (a, b) = (args[0], args[1]);
                let ok = a.compatible(b) && matches!(a, Ty::Int | Ty::Double | Ty::String | Ty::List | Ty::Dyn);
                if !ok {
                    return Err(self.err(operand_offset(), format!("cannot add a {} and a {}", a.name(), b.name())));
                }
                Ok(if a == Ty::Dyn {
                    b
                } else if a.numeric() && b == Ty::Double {
                    Ty::Double
                } else {
                    a
                })
            }
            operators::SUBSTRACT | operators::MULTIPLY | operators::DIVIDE | operators::MODULO => {
                let (a, b) = (args[0], args[1]);
                let num = |t: Ty| t.numeric() || t == Ty::Dyn;
                if !num(a) || !num(b) {
                    return Err(self.err(
                        operand_offset(),
                        format!("arithmetic needs numbers, not a {} and a {}", a.name(), b.name()),
                    ));
                }
                Ok(if a == Ty::Double || b == Ty::Double {
                    Ty::Double
                } else if a == Ty::Int && b == Ty::Int {
                    Ty::Int
                } else {
                    Ty::Dyn
                })
            }
            operators::NEGATE => {
                if !(args[0].numeric() || args[0] == Ty::Dyn) {
                    return Err(self.err(operand_offset(), format!("cannot negate a {}", args[0].name())));
                }
                Ok(args[0])
            }
            operators::CONDITIONAL => {
                bool_operand(args[0], "?:")?;
                Ok(if args[1] == args[2] { args[1] } else { Ty::Dyn })
            }
            operators::INDEX => Ok(match args[0] {
                Ty::String => Ty::String,
                Ty::List | Ty::Map | Ty::Dyn => Ty::Dyn,
                other => return Err(self.err(operand_offset(), format!("cannot index a {}", other.name()))),
            }),
            operators::IN => {
                if !matches!(args[1], Ty::List | Ty::Map | Ty::String | Ty::Dyn) {
                    return Err(
                        self.err(operand_offset(), format!("`in` needs a list or map, not a {}", args[1].name()))
                    );
                }
                Ok(Ty::Bool)
            }
            _ if name.starts_with('_') || name.starts_with('@') || name.starts_with('!') || name.starts_with('-') => {
                Err(self
                    .err(operand_offset(), format!("operator `{}` is not supported", name.trim_matches(['_', '@']))))
            }
            _ => {
                let offset = locate(self.src, name, call.target.is_some());
                if !FUNCTIONS.contains(&name) {
                    return Err(self.err(
                        offset,
                        format!(
                            "unknown function `{name}` (available: {})",
                            FUNCTIONS.iter().filter(|f| **f != "existsOne").copied().collect::<Vec<_>>().join(", ")
                        ),
                    ));
                }
                let n = args.len() + usize::from(target.is_some());
                let want = match name {
                    "max" | "min" => n.max(1),
                    "contains" | "startsWith" | "endsWith" => 2,
                    _ => 1,
                };
                if n != want {
                    return Err(self.err(offset, format!("`{name}` takes {} argument(s), got {}", want, n)));
                }
                match name {
                    "startsWith" | "endsWith" => {
                        for t in target.iter().chain(&args) {
                            if !matches!(t, Ty::String | Ty::Dyn) {
                                return Err(self.err(offset, format!("`{name}` works on strings, not a {}", t.name())));
                            }
                        }
                        Ok(Ty::Bool)
                    }
                    "contains" => Ok(Ty::Bool),
                    "size" | "int" | "uint" => Ok(Ty::Int),
                    "double" => Ok(Ty::Double),
                    "string" => Ok(Ty::String),
                    _ => Ok(Ty::Dyn),
                }
            }
        }
    }
}

/// The first variable or field path named inside `e` (`["campaign", "status"]`).
fn first_name(e: &IdedExpr) -> Option<Vec<String>> {
    match &e.expr {
        Expr::Ident(_) | Expr::Select(_) if path_of(e).is_some() => path_of(e),
        Expr::Select(s) => first_name(&s.operand),
        Expr::Call(c) => c.target.as_deref().and_then(first_name).or_else(|| c.args.iter().find_map(first_name)),
        _ => None,
    }
}

impl ExpressionFilter {
    /// Parses and checks `source`. Errors carry the line and column in the message and an
    /// empty field (the caller puts them under `trigger.expression`).
    pub fn compile(source: &str) -> Result<ExpressionFilter, ValidationError> {
        if source.trim().is_empty() {
            return Err(ValidationError::new("", "is empty"));
        }
        if source.len() > MAX_EXPRESSION_LEN {
            return Err(ValidationError::new(
                "",
                format!("is {} bytes, longer than the {MAX_EXPRESSION_LEN} byte limit", source.len()),
            ));
        }
        if let Some(offset) = nesting_overflow(source, MAX_NESTING) {
            return Err(at(source, offset, format!("brackets nest deeper than {MAX_NESTING} levels")));
        }
        if let Some(offset) = operators_overflow(source, MAX_OPERATORS) {
            return Err(at(source, offset, format!("has more than {MAX_OPERATORS} operators")));
        }
        // The generated parser panics on some incomplete inputs instead of reporting them.
        let parsed = std::panic::catch_unwind(|| {
            cel_parser::Parser::default().parse(source).map_err(|errors| {
                let first = errors.errors.first();
                (first.map_or((1, 1), |e| (e.pos.0.max(1), e.pos.1.max(1))), first.map(|e| e.msg.clone()))
            })
        });
        let ast = match parsed {
            Ok(Ok(ast)) => ast,
            Err(_) => {
                return Err(at(source, source.trim_end().len(), "syntax error: the expression is incomplete"));
            }
            Ok(Err(((line, col), msg))) => {
                let msg = msg.unwrap_or_else(|| "syntax error".to_string());
                return Err(ValidationError::new("", format!("line {line}, column {col}: {msg}")));
            }
        };
        let mut checker = Checker {
            src: source,
            bound: Vec::new(),
            comprehension_depth: 0,
            has_comprehension: false,
            ranges: Vec::new(),
        };
        let ty = checker.check(&ast)?;
        if !matches!(ty, Ty::Bool | Ty::Dyn) {
            return Err(at(
                source,
                0,
                format!("the expression is a {}; it must be a boolean (true: the event matches)", ty.name()),
            ));
        }
        let filter = ExpressionFilter {
            ast,
            source: source.to_string(),
            has_comprehension: checker.has_comprehension,
            ranges: checker.ranges,
        };
        // The sample event carries every token's example: a type error the static check could
        // not see (a field of dynamic type used as the wrong kind) shows up here.
        let sample = Bindings::new(&crate::tokens::sample_event());
        match filter.eval(&sample) {
            Ok(_) | Err(EvalError::TooLarge) => {}
            Err(EvalError::Execution(why)) if !is_type_error(&why) => {}
            Err(e) => {
                return Err(ValidationError::new("", format!("line 1, column 1: fails on the sample event: {e}")))
            }
        }
        Ok(filter)
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// Evaluates on an event's bindings: `Ok(true)` when the event matches.
    pub fn eval(&self, bindings: &Bindings) -> Result<bool, EvalError> {
        if self.has_comprehension && bindings.largest_collection > MAX_COMPREHENSION_ITEMS {
            return Err(EvalError::TooLarge);
        }
        for path in &self.ranges {
            if let Some(v) = bindings.lookup(path) {
                if !matches!(v, Cel::List(_) | Cel::Map(_)) {
                    return Err(EvalError::Execution(format!(
                        "{TYPE_ERROR}`{}` is not a list or map, a comprehension cannot run over it",
                        path.join(".")
                    )));
                }
            }
        }
        let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| eval_node(&self.ast, &bindings.context)))
            .map_err(|p| {
                EvalError::Panic(
                    p.downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| p.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "panic".to_string()),
                )
            })?;
        match out {
            Ok(Cel::Bool(b)) => Ok(b),
            Ok(other) => Err(EvalError::NotBool(format!("{other:?}"))),
            Err(e) => Err(EvalError::Execution(execution_message(&e))),
        }
    }
}

/// Evaluates `e`: the logical operators here, with CEL's rules for errors (`error || true`
/// is `true`, `error && false` is `false`, so the order of the operands does not matter),
/// everything else by the interpreter. The interpreter alone would stop at the first error.
/// (`Context::resolve`, not `Value::resolve`: the latter is `#[inline(always)]` and would be
/// compiled here, at this crate's optimisation level, with far larger stack frames.)
fn eval_node(e: &IdedExpr, ctx: &Context) -> Result<Cel, ExecutionError> {
    let Expr::Call(c) = &e.expr else { return ctx.resolve(e) };
    if c.target.is_some() {
        return ctx.resolve(e);
    }
    let not_bool = |v: Cel| ExecutionError::UnexpectedType { got: format!("{v:?}"), want: "bool".to_string() };
    match (c.func_name.as_str(), c.args.as_slice()) {
        (operators::LOGICAL_OR | operators::LOGICAL_AND, [a, b]) => {
            // The value that decides: `true` for `||`, `false` for `&&`.
            let decisive = c.func_name == operators::LOGICAL_OR;
            let left = eval_node(a, ctx);
            if matches!(left, Ok(Cel::Bool(v)) if v == decisive) {
                return left;
            }
            let right = eval_node(b, ctx);
            match (left, right) {
                (_, Ok(Cel::Bool(v))) if v == decisive => Ok(Cel::Bool(v)),
                (Ok(Cel::Bool(_)), Ok(Cel::Bool(v))) => Ok(Cel::Bool(v)),
                (Err(e), _) | (_, Err(e)) => Err(e),
                (Ok(Cel::Bool(_)), Ok(other)) | (Ok(other), _) => Err(not_bool(other)),
            }
        }
        (operators::LOGICAL_NOT, [a]) => match eval_node(a, ctx)? {
            Cel::Bool(v) => Ok(Cel::Bool(!v)),
            other => Err(not_bool(other)),
        },
        (operators::CONDITIONAL, [cond, yes, no]) => match eval_node(cond, ctx)? {
            Cel::Bool(true) => eval_node(yes, ctx),
            Cel::Bool(false) => eval_node(no, ctx),
            other => Err(not_bool(other)),
        },
        _ => ctx.resolve(e),
    }
}

const TYPE_ERROR: &str = "type error: ";

fn execution_message(e: &ExecutionError) -> String {
    match e {
        ExecutionError::NoSuchKey(k) => format!("the event has no `{k}`"),
        ExecutionError::DivisionByZero(_) | ExecutionError::RemainderByZero(_) | ExecutionError::Overflow(..) => {
            e.to_string()
        }
        other => format!("{TYPE_ERROR}{other}"),
    }
}

fn is_type_error(message: &str) -> bool {
    message.starts_with(TYPE_ERROR)
}

/// An event's variables, built once per event and shared by every webhook's expression.
pub struct Bindings {
    context: Context<'static>,
    largest_collection: usize,
}

impl Bindings {
    /// The value at a path from a variable (`["data", "tags"]`), if there is one.
    fn lookup(&self, path: &[String]) -> Option<Cel> {
        let mut cur = self.context.get_variable(&path[0]).ok()?;
        for field in &path[1..] {
            cur = match cur {
                Cel::Map(m) => m.get(&key(field))?.clone(),
                _ => return None,
            };
        }
        Some(cur)
    }

    pub fn new(event: &Event) -> Bindings {
        let mut largest = 0usize;
        let mut context = Context::default();
        let mut ev = HashMap::new();
        ev.insert("id".to_string(), Cel::String(Arc::new(event.id.clone())));
        ev.insert("type".to_string(), Cel::String(Arc::new(event.event_type.as_str().to_string())));
        ev.insert(
            "occurred_at".to_string(),
            Cel::String(Arc::new(event.occurred_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))),
        );
        ev.insert("tenant_id".to_string(), Cel::String(Arc::new(event.tenant_id.clone())));
        context.add_variable_from_value("event", map(ev));
        // One pass over the data: each value converted once, shared (its CEL form is
        // reference-counted) by `data` and the grouped variable it belongs to.
        let mut groups: Vec<HashMap<Key, Cel>> = GROUPS.iter().map(|_| HashMap::new()).collect();
        let mut data = HashMap::with_capacity(event.data.len());
        for (k, v) in &event.data {
            let value = to_cel(v, &mut largest);
            for (i, (_, prefix, extra)) in GROUPS.iter().enumerate() {
                if let Some(rest) = k.strip_prefix(prefix) {
                    groups[i].insert(key(rest), value.clone());
                } else if extra.contains(&k.as_str()) {
                    groups[i].insert(key(k), value.clone());
                }
            }
            data.insert(key(k), value);
        }
        if let Some(id) = &event.call_id {
            groups[0].insert(key("id"), Cel::String(Arc::new(id.clone())));
        }
        for ((group, _, _), fields) in GROUPS.iter().zip(groups) {
            context.add_variable_from_value(*group, cel_map(fields));
        }
        let tags = match data.get(&key("tags")) {
            Some(v @ Cel::Map(_)) => v.clone(),
            _ => cel_map(HashMap::new()),
        };
        context.add_variable_from_value("tags", tags);
        largest = largest.max(data.len());
        context.add_variable_from_value("data", cel_map(data));
        Bindings { context, largest_collection: largest }
    }
}

fn map(fields: HashMap<String, Cel>) -> Cel {
    cel_map(fields.into_iter().map(|(k, v)| (Key::String(Arc::new(k)), v)).collect())
}

fn cel_map(fields: HashMap<Key, Cel>) -> Cel {
    Cel::Map(CelMap { map: Arc::new(fields) })
}

fn key(s: &str) -> Key {
    Key::String(Arc::new(s.to_string()))
}

fn to_cel(v: &Value, largest: &mut usize) -> Cel {
    match v {
        Value::Null => Cel::Null,
        Value::Bool(b) => Cel::Bool(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Cel::Int(i),
            None => Cel::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => Cel::String(Arc::new(s.clone())),
        Value::Array(a) => {
            *largest = (*largest).max(a.len());
            Cel::List(Arc::new(a.iter().map(|x| to_cel(x, largest)).collect()))
        }
        Value::Object(o) => {
            *largest = (*largest).max(o.len());
            cel_map(o.iter().map(|(k, x)| (key(k), to_cel(x, largest))).collect())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::event_from_value;
    use serde_json::json;

    fn event(data: Value) -> Event {
        event_from_value(
            json!({"id":"e1","type":"call.ended","occurred_at":0,"tenant_id":"acme","call_id":"c1","data":data}),
        )
        .unwrap()
    }

    fn eval(src: &str, e: &Event) -> Result<bool, EvalError> {
        ExpressionFilter::compile(src).unwrap_or_else(|e| panic!("{src}: {e}")).eval(&Bindings::new(e))
    }

    fn refused(src: &str) -> String {
        match ExpressionFilter::compile(src) {
            Ok(_) => panic!("`{src}` was accepted"),
            Err(e) => e.message,
        }
    }

    const SALES: &str = r#"call.duration > 30 && call.status == "answered" && campaign.name.startsWith("Sales") && !(tags.region == "north")"#;

    #[test]
    fn the_sales_filter_routes_exactly_the_matching_calls() {
        let yes = event(
            json!({"call_duration": 45, "call_status": "answered", "campaign_name": "Sales East", "tags": {"region": "south"}}),
        );
        assert_eq!(eval(SALES, &yes), Ok(true));
        let short = event(
            json!({"call_duration": 30, "call_status": "answered", "campaign_name": "Sales East", "tags": {"region": "south"}}),
        );
        assert_eq!(eval(SALES, &short), Ok(false));
        let north = event(
            json!({"call_duration": 45, "call_status": "answered", "campaign_name": "Sales East", "tags": {"region": "north"}}),
        );
        assert_eq!(eval(SALES, &north), Ok(false));
        let support = event(
            json!({"call_duration": 45, "call_status": "answered", "campaign_name": "Support", "tags": {"region": "south"}}),
        );
        assert_eq!(eval(SALES, &support), Ok(false));
        // A missing data point fails the evaluation: no match, never an accidental one.
        let bare = event(json!({"call_duration": 45}));
        assert!(matches!(eval(SALES, &bare), Err(EvalError::Execution(m)) if m.contains("no `status`")));
        assert_eq!(eval(r#"has(call.status) && call.status == "answered""#, &bare), Ok(false));
        // Errors follow CEL's rules in `||` and `&&`, whatever the order of the operands.
        let closing = event(json!({"closing": true}));
        assert_eq!(eval("has(data.closing) || call.status == \"x\"", &closing), Ok(true));
        assert_eq!(eval("call.status == \"x\" || has(data.closing)", &closing), Ok(true));
        assert_eq!(eval("call.status == \"x\" && !has(data.closing)", &closing), Ok(false));
        assert_eq!(eval("!has(data.closing) && call.status == \"x\"", &closing), Ok(false));
        assert!(eval("call.status == \"x\" || !has(data.closing)", &closing).is_err());
        assert!(eval("call.status == \"x\" && has(data.closing)", &closing).is_err());
        assert_eq!(eval("has(data.closing) ? true : call.status == \"x\"", &closing), Ok(true));
    }

    #[test]
    fn variables_follow_the_catalog() {
        let e = event(json!({"call_duration": 45, "direction": "inbound", "tracking": "7774839229",
            "campaign_id": "c-1", "contact_email": "a@b.example", "visitor_city": "Austin", "utm_source": "google",
            "ivr_label": "Sales", "visitor_lat": 30.5, "appointment_booked": true,
            "prompt_responses": [{"question": "one", "response": "1"}], "custom_key": "x"}));
        for src in [
            r#"event.type == "call.ended" && event.tenant_id == "acme" && event.id == "e1""#,
            r#"call.id == "c1" && call.direction == "inbound" && call.tracking == "7774839229""#,
            r#"campaign.id == "c-1" && contact.email.endsWith("@b.example") && visitor.city == "Austin""#,
            r#"utm.source == "google" && ivr.label == "Sales" && visitor.lat > 30"#,
            r#"data.appointment_booked && data.custom_key == "x" && data.call_duration == 45"#,
            r#"data.prompt_responses.exists(p, p.response == "1") && size(data.prompt_responses) == 1"#,
            r#"call.direction in ["inbound", "click_to_call"]"#,
        ] {
            assert_eq!(eval(src, &e), Ok(true), "{src}");
        }
    }

    #[test]
    fn malformed_expressions_are_refused_with_the_position() {
        let m = refused("call.duration > 30 &&\n  (call.status == ");
        assert!(m.starts_with("line 2, column "), "{m}");
        let m = refused(r#"call.duration > 30 && regoin == "north""#);
        assert!(m.starts_with("line 1, column 23: undeclared reference to `regoin`"), "{m}");
        let m = refused("call.duraton > 30");
        assert!(m.starts_with("line 1, column 6: `call` has no field `duraton`"), "{m}");
        let m = refused(r#"call.duration > "30""#);
        assert!(m.contains("cannot order a int against a string"), "{m}");
        // Positions point at the offending path, not at an earlier use of the same name.
        let m = refused(r#"call.status == "x" && campaign.status == 1"#);
        assert!(m.starts_with("line 1, column 32: cannot compare a string with a int"), "{m}");
        let m = refused(r#"data.status == "x" && campaign.stat == "y""#);
        assert!(m.starts_with("line 1, column 32: `campaign` has no field `stat`"), "{m}");
        let m = refused(r#"call.status.startsWith(1)"#);
        assert!(m.contains("works on strings"), "{m}");
        let m = refused("call.duration + 1");
        assert!(m.contains("must be a boolean"), "{m}");
        let m = refused(r#"call.status.matches("a.*")"#);
        assert!(m.contains("unknown function `matches`"), "{m}");
        let m = refused("call.duration.all(x, x > 1)");
        assert!(m.contains("runs over a list or map, not a int"), "{m}");
        let m = refused("data.prompt_responses.all(p, data.prompt_responses.exists(q, q == p))");
        assert!(m.contains("may not nest"), "{m}");
        let m = refused("google.protobuf.Int64Value{value: 1} == 1");
        assert!(m.contains("column"), "{m}");
        let m = refused("data.tags > 3");
        assert!(m.contains("cannot order a map against a int"), "{m}");
        // Fields of dynamic type are checked on the sample event, where `tags.region` is a string.
        let m = refused("data.tags.region > 3");
        assert!(m.contains("fails on the sample event"), "{m}");
        // A key the sample lacks is not a type error: switches send their own keys.
        ExpressionFilter::compile("data.custom_flag == true").unwrap();
    }

    #[test]
    fn the_cost_bound_holds() {
        let long = format!("call.duration > 1 {}", "&& true ".repeat(200));
        assert!(refused(&long).contains("byte limit"));
        let deep = format!("{}true{}", "(".repeat(30), ")".repeat(30));
        assert!(refused(&deep).starts_with("line 1, column 25: brackets nest deeper"), "{}", refused(&deep));
        // Parentheses inside strings do not count.
        ExpressionFilter::compile(&format!(r#"call.status == "{}""#, "(".repeat(40))).unwrap();
        // A comprehension over a list longer than the bound does not run.
        let many: Vec<Value> = (0..MAX_COMPREHENSION_ITEMS + 1).map(|i| json!(i)).collect();
        let e = event(json!({"numbers": many}));
        assert_eq!(eval("data.numbers.exists(n, n == 3)", &e), Err(EvalError::TooLarge));
        // The same event still matches expressions without a comprehension.
        assert_eq!(eval("size(data.numbers) > 3", &e), Ok(true));
        // A run-time type mismatch is an error, not a panic; a comprehension over a string
        // (which the interpreter does not support) is caught.
        let e = event(json!({"odd": "text"}));
        assert!(
            matches!(eval("data.odd.exists(x, x == 1)", &e), Err(EvalError::Execution(m)) if m.contains("not a list or map")),
            "refused before the interpreter would panic"
        );
        // Ranges that are not paths are refused at write time unless they are literals.
        ExpressionFilter::compile("[1, 2].exists(x, x == call.duration)").unwrap();
        assert!(refused("(has(data.a) ? data.a : data.b).exists(x, x == 1)")
            .contains("runs over a list, a map or a data point"));
    }

    #[test]
    fn deep_expressions_within_the_length_limit_fit_a_worker_stack() {
        // Recursion is bounded by the length limit: the longest chains of unary operators,
        // binary operators and field selections compile, check and evaluate on a 2 MiB stack
        // (tokio's worker threads), in an unoptimised build.
        let n = MAX_EXPRESSION_LEN;
        let inputs = [
            format!("{}true", "!".repeat(MAX_OPERATORS)),
            format!("-{}1 > 0", " -".repeat(MAX_OPERATORS - 2)),
            format!("1{} > 0", " + 1".repeat(MAX_OPERATORS - 1)),
            format!("has(data{})", ".a".repeat((n - 10) / 2)),
            format!("true{}", " && true".repeat(MAX_OPERATORS)),
            format!("false{}", " || false".repeat(MAX_OPERATORS)),
            format!("true{}", " == true".repeat(MAX_OPERATORS)),
            // Unary and binary operators mixed, up to the limit.
            format!("{}(1{} > 0)", "!".repeat(MAX_OPERATORS / 2), " + 1".repeat(MAX_OPERATORS / 2 - 1)),
            format!("{}(false{})", "!".repeat(MAX_OPERATORS / 2), " || !false".repeat(MAX_OPERATORS / 4)),
        ];
        for src in inputs {
            assert!(src.len() <= n);
            let outcome = std::thread::Builder::new()
                .stack_size(2 << 20)
                .spawn(move || match ExpressionFilter::compile(&src) {
                    Ok(f) => {
                        f.eval(&Bindings::new(&crate::tokens::sample_event())).map(|_| ()).map_err(|e| e.to_string())
                    }
                    Err(e) => Err(e.to_string()),
                })
                .unwrap()
                .join();
            assert!(outcome.is_ok(), "overflowed the stack or panicked");
        }
        let m = refused(&format!("1{} > 0", " + 1".repeat(MAX_OPERATORS)));
        assert!(m.starts_with(&format!("line 1, column {}: has more than", 4 * MAX_OPERATORS + 3)), "{m}");
        // Operators inside strings do not count.
        ExpressionFilter::compile(&format!("call.status == \"{}\"", "+".repeat(500))).unwrap();
    }

    /// A random expression from a small grammar of what filters look like.
    fn random_expression(rng: &mut rand::rngs::StdRng, depth: u32) -> String {
        use rand::Rng;
        const PATHS: &[&str] = &[
            "call.duration",
            "call.status",
            "campaign.name",
            "tags.region",
            "data.prompt_responses",
            "data.tags",
            "data.visitor_lat",
            "event.type",
            "data.missing",
            "ivr.option",
            "data.appointment_booked",
            "visitor.lat",
        ];
        const LITERALS: &[&str] =
            &["30", "\"answered\"", "2.5", "true", "null", "[1, \"a\"]", "{\"a\": 1}", "-1", "\"\""];
        const OPS: &[&str] = &["==", "!=", "<", ">=", "+", "-", "*", "/", "%", "in"];
        let path = PATHS[rng.random_range(0..PATHS.len())];
        let lit = LITERALS[rng.random_range(0..LITERALS.len())];
        if depth == 0 {
            return match rng.random_range(0..5) {
                0 => format!("{path} {} {lit}", OPS[rng.random_range(0..OPS.len())]),
                1 => format!("has({path})"),
                2 => format!("{path}.startsWith({lit})"),
                3 => format!("size({path}) > {lit}"),
                _ => format!("{path}.exists(x, x {} {lit})", OPS[rng.random_range(0..OPS.len())]),
            };
        }
        let a = random_expression(rng, depth - 1);
        let sub = rng.random_range(0..depth);
        let b = random_expression(rng, sub);
        match rng.random_range(0..5) {
            0 => format!("{a} && {b}"),
            1 => format!("{a} || {b}"),
            2 => format!("!({a})"),
            3 => format!("({a}) ? {b} : false"),
            _ => format!("[{a}, {b}].all(v, v)"),
        }
    }

    #[test]
    fn random_expressions_never_escape_compile_or_eval() {
        // A small deterministic fuzz: expressions from a grammar of filters, a third of them
        // mutated (a byte dropped or inserted), must come back as a value or an error from
        // `compile` and `eval`: never a panic out of them, never a stack overflow on a
        // worker-sized stack.
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(17);
        // The sample event, and one whose data points have the wrong types (the router reads
        // what is on the topic; a foreign producer may skip ingest's validation).
        let mut odd = crate::tokens::sample_event();
        for (k, v) in [
            ("call_duration", json!("long")),
            ("tags", json!([1, 2])),
            ("prompt_responses", json!("none")),
            ("visitor_lat", json!(null)),
        ] {
            odd.data.insert(k.into(), v);
        }
        let events = [crate::tokens::sample_event(), odd];
        let inputs: Vec<String> = (0..1500)
            .map(|_| {
                let depth = rng.random_range(0..5);
                let mut src = random_expression(&mut rng, depth);
                if rng.random_range(0..3) == 0 && !src.is_empty() {
                    let at = rng.random_range(0..src.len());
                    if src.is_char_boundary(at) {
                        if rng.random_bool(0.5) {
                            src.remove(at);
                        } else {
                            src.insert(at, ['(', ')', '"', '.', '!', ','][rng.random_range(0..6)]);
                        }
                    }
                }
                src
            })
            .collect();
        let (accepted, matched) = std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(move || {
                let bindings: Vec<Bindings> = events.iter().map(Bindings::new).collect();
                let (mut accepted, mut matched) = (0, 0);
                for src in &inputs {
                    if let Ok(f) = ExpressionFilter::compile(src) {
                        accepted += 1;
                        for b in &bindings {
                            matched += usize::from(f.eval(b) == Ok(true));
                        }
                    }
                }
                (accepted, matched)
            })
            .unwrap()
            .join()
            .expect("no panic escapes");
        // The generator must exercise evaluation, not only the refusals.
        assert!(accepted > 100 && matched > 50, "{accepted} compiled, {matched} matched");
        eprintln!("{accepted} of 1500 random expressions compiled, {matched} evaluations matched");
    }

    #[test]
    fn evaluation_is_fast() {
        let f = ExpressionFilter::compile(SALES).unwrap();
        let e = crate::tokens::sample_event();
        let n = 2000;
        let start = std::time::Instant::now();
        for _ in 0..n {
            std::hint::black_box(Bindings::new(&e));
        }
        let bindings = start.elapsed() / n;
        let b = Bindings::new(&e);
        let start = std::time::Instant::now();
        for _ in 0..n {
            let _ = std::hint::black_box(f.eval(&b));
        }
        let eval = start.elapsed() / n;
        // Bindings: the whole sample event (~130 data points), once per event.
        assert!(bindings + eval < std::time::Duration::from_millis(2), "{bindings:?} + {eval:?} per event");
        eprintln!("bindings {bindings:?} per event, evaluation {eval:?} per webhook");
    }
}
