//! The process format as written in YAML: serde types that mirror the file.
//!
//! These types are the single source of truth for the format: the loader decodes into
//! them, and the JSON Schema in `docs/process.schema.json` is generated from them (doc
//! comments become the schema's descriptions, which editors show as completion help).
//! Nothing here is checked beyond its shape; [`super::validate`] turns a
//! [`ProcessDef`] into a validated [`super::Process`].
//!
//! Conventions, documented for designers in `docs/process-format.md`:
//! - fields of type [`Expr`] are always CEL expressions (`when: amount > 1000`);
//! - fields of type [`Value`] are literals, where any string that starts with `=` is a
//!   CEL expression (`assignee: =lead.owner`, `group: sales`);
//! - `next` names the node that follows; only gateways may name several.

use super::schema;
use indexmap::IndexMap;
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;

/// A literal value; a string that starts with `=` is a CEL expression evaluated
/// against the instance's variables (`=lead.owner`, `= price * quantity`).
pub type Value = serde_json::Value;

/// Named values, each a [`Value`] (literal, or `=expression`).
pub type Mapping = IndexMap<String, Value>;

/// A CEL expression, written without the leading `=` (`amount > 1000 && vip`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct Expr(pub String);

/// One process definition: one YAML file.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "Ordo process definition")]
pub struct ProcessDef {
    /// The process id: what deployments, call activities and the API name it by.
    /// Letters, digits, `_`, `-` and `.`; it starts with a letter.
    #[schemars(regex(pattern = schema::ID_PATTERN), example = &"lead-to-cash")]
    pub id: String,
    /// A human name shown in lists and diagrams.
    #[serde(default)]
    pub name: Option<String>,
    /// What the process is for.
    #[serde(default)]
    pub description: Option<String>,
    /// The working calendar that business-day durations (`P5BD`) use when their timer
    /// names none. Defaults to the calendar named `default`.
    #[serde(default)]
    #[schemars(example = &"default")]
    pub calendar: Option<String>,
    /// Who may start the process by API or from the pages. Admins always may; a
    /// process without `starters` may be started that way by admins and designers
    /// only. Message and signal starts are for integrators and admins; timer, call
    /// and spawn starts are the engine's own.
    #[serde(default)]
    pub starters: Option<Starters>,
    /// Process variables with their types and defaults.
    #[serde(default)]
    #[schemars(transform = schema::var_keys)]
    pub variables: IndexMap<String, VariableDef>,
    /// The payload of each message the process starts on or waits for, by message
    /// name: the variables a message of that name carries, with the same shape
    /// language as `variables`. A message that does not fit is refused before it
    /// changes anything.
    #[serde(default)]
    pub messages: IndexMap<String, MessageDef>,
    /// How instances start: by message, by timer, by signal, or by call (API or a call
    /// activity). At least one.
    #[schemars(length(min = 1))]
    pub start: Vec<StartEvent>,
    /// The nodes of the process, by id. Ids are unique in the whole file, nested
    /// scopes included.
    #[schemars(transform = schema::id_keys)]
    pub nodes: IndexMap<String, Node>,
}

impl ProcessDef {
    /// The names of the messages the process starts on or waits for (start events,
    /// receive tasks, catch events, boundary events, event gateways and event
    /// subprocesses, nested scopes included), in the order they appear.
    pub fn received_messages(&self) -> Vec<&str> {
        fn walk<'a>(nodes: &'a IndexMap<String, Node>, out: &mut Vec<&'a str>) {
            for n in nodes.values() {
                let own = match n {
                    Node::Receive(r) => Some(r.message.as_str()),
                    Node::Catch(c) => c.message.as_deref(),
                    Node::EventSubprocess(e) => e.message.as_deref(),
                    _ => None,
                };
                out.extend(own);
                if let Node::Event(g) = n {
                    out.extend(g.events.iter().filter_map(|e| e.message.as_deref()));
                }
                out.extend(n.boundary().iter().filter_map(|b| b.message.as_deref()));
                if let Some((_, inner)) = n.scope() {
                    walk(inner, out);
                }
            }
        }
        let mut out: Vec<&str> = self
            .start
            .iter()
            .filter_map(|s| s.message.as_deref())
            .collect();
        walk(&self.nodes, &mut out);
        let mut seen = std::collections::HashSet::new();
        out.retain(|m| seen.insert(*m));
        out
    }
}

/// Who may start a process by API or from the pages: anyone with one of `roles`,
/// a member of one of `groups`, or one of `users`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Starters {
    /// Roles whose holders may start it (`salesperson`, `supervisor`, `admin`,
    /// `maintenance`, `designer`, `integrator`).
    #[serde(default)]
    pub roles: Vec<String>,
    /// Groups whose members may start it.
    #[serde(default)]
    pub groups: Vec<String>,
    /// People who may start it, by name.
    #[serde(default)]
    pub users: Vec<String>,
}

impl Starters {
    /// Whether someone with these roles, groups and name is named here.
    pub fn admits(&self, user: &str, roles: &[&str], groups: &[String]) -> bool {
        self.users.iter().any(|u| u == user)
            || self.roles.iter().any(|r| roles.contains(&r.as_str()))
            || self.groups.iter().any(|g| groups.contains(g))
    }
}

/// The payload a message carries.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MessageDef {
    /// What the message means and who sends it.
    #[serde(default)]
    pub description: Option<String>,
    /// Its variables, declared as process variables are (type, `required`, shape).
    #[serde(default)]
    pub variables: IndexMap<String, VariableDef>,
    /// Whether variables it does not declare are accepted (the default) or
    /// refused (`false`).
    #[serde(default = "yes", skip_serializing_if = "Clone::clone")]
    pub additional_variables: bool,
}

/// A declared variable: its type and, optionally, the shape of its values.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(transform = schema::variable)]
pub struct VariableDef {
    /// The JSON type values must have.
    #[serde(rename = "type")]
    pub ty: VarType,
    /// The value it takes when the instance starts without one.
    #[serde(default)]
    pub default: Option<serde_json::Value>,
    /// An instance cannot start without it; as a property of an object, the object
    /// must have it.
    #[serde(default)]
    pub required: bool,
    /// What it holds.
    #[serde(default)]
    pub description: Option<String>,
    /// Set by the process itself (a policy, a flag of its own), never given by
    /// whoever starts an instance: a start that gives it is refused.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub internal: bool,
    /// For an `object`: its properties, each declared like a variable.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub properties: IndexMap<String, VariableDef>,
    /// For an `object` with `properties`: whether properties not listed are
    /// allowed (the default), or refused (`false`).
    #[serde(default = "yes", skip_serializing_if = "Clone::clone")]
    pub additional_properties: bool,
    /// For an `array`: what each item must be.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub items: Option<Box<VariableDef>>,
    /// The only values allowed.
    #[serde(default, rename = "enum", skip_serializing_if = "Vec::is_empty")]
    pub allowed: Vec<serde_json::Value>,
    /// For a `number` or `integer`: the smallest value allowed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    /// For a `number` or `integer`: the largest value allowed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    /// For a `string`: a regular expression the whole value must match (`^[0-9]+$`
    /// style anchors are implied).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    /// For a `string`: the most characters; for an `array`: the most items.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_length: Option<u32>,
}

/// Types a variable may declare.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
#[schemars(transform = schema::closed_set)]
pub enum VarType {
    /// Any JSON string.
    String,
    /// Any JSON number.
    Number,
    /// A whole number.
    Integer,
    /// `true` or `false`.
    Boolean,
    /// A calendar date or a date-time, as an RFC 3339 string.
    Date,
    /// A JSON object.
    Object,
    /// A JSON array.
    Array,
    /// Anything.
    Any,
}

/// One or several node ids. Only gateways may name several.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Next {
    /// The one node that follows.
    One(String),
    /// Several nodes (a parallel or inclusive split).
    Many(Vec<String>),
}

impl Next {
    /// The ids named, in order.
    pub fn ids(&self) -> &[String] {
        match self {
            Next::One(id) => std::slice::from_ref(id),
            Next::Many(ids) => ids,
        }
    }
}

impl<'de> Deserialize<'de> for Next {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Next;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a node id, or a list of node ids")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Next, E> {
                Ok(Next::One(v.to_owned()))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Next, A::Error> {
                let mut ids = Vec::new();
                while let Some(id) = seq.next_element::<String>()? {
                    ids.push(id);
                }
                Ok(Next::Many(ids))
            }
        }
        d.deserialize_any(V)
    }
}

impl JsonSchema for Next {
    fn schema_name() -> Cow<'static, str> {
        "Next".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "The node that follows, or a list of nodes (only on parallel and inclusive gateways).",
            "oneOf": [
                { "type": "string" },
                { "type": "array", "items": { "type": "string" }, "minItems": 1 }
            ]
        })
    }
}

/// A timer: exactly one of `duration`, `date` or `cycle`. Written as a plain string,
/// it is a duration (`timer: PT15M`, `timer: P5BD`).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TimerDef {
    /// An ISO 8601 duration (`PT15M`, `P1DT12H`, `P2W`), a business-day duration on a
    /// working calendar (`P5BD`: five working days), or `=expression`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<String>,
    /// An RFC 3339 date-time (`2027-01-04T09:00:00+08:00`), or `=expression`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date: Option<String>,
    /// A cron expression, 5 fields (`min hour day month weekday`) or 6–7 with seconds
    /// and year (`0 0 9 * * Mon`). Repeats.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cycle: Option<String>,
    /// The IANA time zone a `cycle` is read in (`Asia/Shanghai`). Defaults to UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// The working calendar for a business-day duration; defaults to the process's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calendar: Option<String>,
}

impl JsonSchema for TimerDef {
    fn schema_name() -> Cow<'static, str> {
        "TimerDef".into()
    }
    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        schema::timer(generator)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TimerFields {
    #[serde(default)]
    duration: Option<String>,
    #[serde(default)]
    date: Option<String>,
    #[serde(default)]
    cycle: Option<String>,
    #[serde(default)]
    timezone: Option<String>,
    #[serde(default)]
    calendar: Option<String>,
}

impl<'de> Deserialize<'de> for TimerDef {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = TimerDef;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str(
                    "a duration such as `PT15M`, or a map with `duration`, `date` or `cycle`",
                )
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<TimerDef, E> {
                Ok(TimerDef {
                    duration: Some(v.to_owned()),
                    ..TimerDef::default()
                })
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<TimerDef, A::Error> {
                let f =
                    TimerFields::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                Ok(TimerDef {
                    duration: f.duration,
                    date: f.date,
                    cycle: f.cycle,
                    timezone: f.timezone,
                    calendar: f.calendar,
                })
            }
        }
        d.deserialize_any(V)
    }
}

/// A start event: how an instance comes to be. At most one of `message`, `timer` and
/// `signal`; with none of them (or `call: true`) the process starts by call, from the
/// API or a call activity.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StartEvent {
    /// The start event's id, unique in the file.
    pub id: String,
    /// The node the new instance goes to.
    pub next: String,
    /// Starts an instance when a message of this name arrives (instantiation by message).
    #[serde(default)]
    pub message: Option<String>,
    /// The correlation key of a message start: a CEL expression over the message's
    /// variables. It becomes the instance's business key.
    #[serde(default)]
    pub key: Option<Expr>,
    /// With `key`: at most one active instance per key; a second message with the same
    /// key does not start another.
    #[serde(default)]
    pub unique: bool,
    /// Starts instances on a timer (a `cycle` repeats).
    #[serde(default)]
    pub timer: Option<TimerDef>,
    /// Starts an instance whenever this signal is broadcast.
    #[serde(default)]
    pub signal: Option<String>,
    /// Marks the start used by the API and call activities (instantiation by call).
    /// Implied when no other trigger is given.
    #[serde(default)]
    pub call: Option<bool>,
}

/// A boundary event on an activity: exactly one of `timer`, `message`, `signal`,
/// `error` or `escalation`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BoundaryEvent {
    /// An id for history and diagrams; defaults to `<activity>.boundary<N>`.
    #[serde(default)]
    pub id: Option<String>,
    /// Fires when the timer runs out while the activity is active.
    #[serde(default)]
    pub timer: Option<TimerDef>,
    /// Fires when a message of this name correlates to the instance.
    #[serde(default)]
    pub message: Option<String>,
    /// The message's correlation key (CEL over the instance's variables); defaults to
    /// the instance's business key.
    #[serde(default)]
    pub key: Option<Expr>,
    /// Fires when this signal is broadcast.
    #[serde(default)]
    pub signal: Option<String>,
    /// Catches an error with this code raised inside the activity; `"*"` catches any.
    /// Error boundaries always interrupt.
    #[serde(default)]
    pub error: Option<String>,
    /// Catches an escalation with this code raised inside the activity; `"*"` any.
    #[serde(default)]
    pub escalation: Option<String>,
    /// Cancel the activity when the event fires (default), or run the boundary path
    /// beside it.
    #[serde(default = "yes")]
    pub interrupting: bool,
    /// The node the boundary path goes to.
    pub to: String,
}

fn yes() -> bool {
    true
}

/// Runs the activity once per item of a collection, or a number of times (BPML
/// foreach).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MultiInstance {
    /// The collection: a CEL expression giving a list.
    #[serde(default)]
    pub items: Option<Expr>,
    /// Or how many times: a CEL expression giving an integer.
    #[serde(default)]
    pub count: Option<Expr>,
    /// The variable holding the current item, local to each run.
    #[serde(default = "default_item_var", rename = "as")]
    pub item_var: String,
    /// The variable holding the run's position (0-based), local to each run.
    #[serde(default = "default_index_var")]
    pub index: String,
    /// Run all at once (true) or one after the other (false, default).
    #[serde(default)]
    pub parallel: bool,
    /// Finish early when this CEL expression holds; it sees `completed`, `total` and
    /// `outputs` (e.g. `completed >= 2`).
    #[serde(default)]
    pub completion: Option<Expr>,
    /// What each run contributes: a CEL expression over the run's variables.
    #[serde(default)]
    pub output: Option<Expr>,
    /// The variable that receives the outputs, in item order.
    #[serde(default)]
    pub into: Option<String>,
    /// The runs still open when `completion` holds: `cancel` (the default)
    /// withdraws them; `wait` lets them finish unobserved while the flow goes
    /// on (their outputs are not collected), and the scope around the activity
    /// ends only after them (workflow pattern 34).
    #[serde(default)]
    pub rest: Option<Rest>,
}

fn default_item_var() -> String {
    "item".to_owned()
}
fn default_index_var() -> String {
    "index".to_owned()
}

/// A branch of an exclusive or inclusive gateway.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Branch {
    /// The condition (CEL).
    #[schemars(example = &"amount > 1000 && customer.vip")]
    pub when: Expr,
    /// Where the branch goes.
    pub to: String,
}

/// One event of an event-based gateway: exactly one of `message`, `timer`, `signal`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GatewayEvent {
    /// Waits for a message of this name.
    #[serde(default)]
    pub message: Option<String>,
    /// The message's correlation key; defaults to the instance's business key.
    #[serde(default)]
    pub key: Option<Expr>,
    /// Waits for a timer.
    #[serde(default)]
    pub timer: Option<TimerDef>,
    /// Waits for a signal.
    #[serde(default)]
    pub signal: Option<String>,
    /// Where the flow goes if this event comes first.
    pub to: String,
}

/// A field of a user task's form.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FormField {
    /// The field's type.
    #[serde(rename = "type")]
    pub ty: FieldType,
    /// The label shown to the person; defaults to the field name.
    #[serde(default)]
    pub label: Option<String>,
    /// The form cannot be completed without it.
    #[serde(default)]
    pub required: bool,
    /// Smallest value (number, integer).
    #[serde(default)]
    pub min: Option<f64>,
    /// Largest value (number, integer).
    #[serde(default)]
    pub max: Option<f64>,
    /// Shortest text (string, text).
    #[serde(default)]
    pub min_length: Option<u32>,
    /// Longest text (string, text).
    #[serde(default)]
    pub max_length: Option<u32>,
    /// The allowed values (enum).
    #[serde(default)]
    pub options: Vec<String>,
    /// The value shown before the person changes it; a literal or `=expression`.
    #[serde(default)]
    #[schemars(schema_with = "schema::form_default")]
    pub default: Option<Value>,
}

/// Types of form fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
#[schemars(transform = schema::closed_set)]
pub enum FieldType {
    /// One line of text.
    String,
    /// Several lines of text.
    Text,
    /// Any number.
    Number,
    /// A whole number.
    Integer,
    /// Yes or no.
    Boolean,
    /// A calendar date (`2026-11-23`).
    Date,
    /// A date and a time (RFC 3339).
    Datetime,
    /// One of `options`.
    Enum,
    /// A user name.
    User,
}

/// A node of the process graph, by `type`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
#[schemars(transform = schema::node)]
pub enum Node {
    /// Does nothing (BPML empty).
    Empty(Empty),
    /// Sets variables from literals or expressions (BPML assign).
    Assign(Assign),
    /// Calls an action a plugin registers (BPML action).
    Service(Service),
    /// Waits for a person to complete a task.
    User(User),
    /// Waits for a message (receive task).
    Receive(Receive),
    /// Intermediate catch event: waits for a message, a timer (BPML delay) or a signal
    /// (BPML synch).
    Catch(Catch),
    /// Intermediate throw event: sends a message, broadcasts a signal (BPML raise),
    /// raises an escalation or an error (BPML fault), or compensates (BPML compensate).
    Throw(Throw),
    /// Exclusive gateway (BPML switch): the first branch whose condition holds.
    Exclusive(Exclusive),
    /// Inclusive gateway: every branch whose condition holds; as a join, waits for the
    /// tokens that can still arrive.
    Inclusive(Inclusive),
    /// Parallel gateway (BPML all): splits into every `next`, or joins every incoming flow.
    Parallel(Parallel),
    /// Complex gateway: a join that fires once its `activation` condition holds
    /// over the branches arrived (the discriminator, N-of-M partial joins).
    Complex(Complex),
    /// Event-based gateway (BPML choice): the first event to happen wins.
    Event(EventGateway),
    /// Embedded subprocess with its own scope (BPML sequence within a scope).
    Subprocess(Subprocess),
    /// Event subprocess: runs inside the enclosing scope when its trigger happens.
    EventSubprocess(EventSubprocess),
    /// A loop over a body scope: `while` tests before each run, `until` after.
    Loop(Loop),
    /// Starts another process and waits for it to end (BPML call).
    Call(Call),
    /// Starts another process and goes on without waiting (BPML spawn).
    Spawn(Spawn),
    /// End event: ends the path, or the whole instance (`terminate`), or raises an
    /// error, escalation, message or signal as it ends.
    End(End),
}

impl Node {
    /// Every `type` name, in declaration order.
    pub const TYPES: &'static [&'static str] = &[
        "empty",
        "assign",
        "service",
        "user",
        "receive",
        "catch",
        "throw",
        "exclusive",
        "inclusive",
        "parallel",
        "complex",
        "event",
        "subprocess",
        "event_subprocess",
        "loop",
        "call",
        "spawn",
        "end",
    ];

    /// Types whose nodes may carry `boundary` events (activities that last).
    pub const WITH_BOUNDARY: &'static [&'static str] =
        &["service", "user", "receive", "subprocess", "loop", "call"];

    /// The `type` name of this node.
    pub fn type_name(&self) -> &'static str {
        match self {
            Node::Empty(_) => "empty",
            Node::Assign(_) => "assign",
            Node::Service(_) => "service",
            Node::User(_) => "user",
            Node::Receive(_) => "receive",
            Node::Catch(_) => "catch",
            Node::Throw(_) => "throw",
            Node::Exclusive(_) => "exclusive",
            Node::Inclusive(_) => "inclusive",
            Node::Parallel(_) => "parallel",
            Node::Complex(_) => "complex",
            Node::Event(_) => "event",
            Node::Subprocess(_) => "subprocess",
            Node::EventSubprocess(_) => "event_subprocess",
            Node::Loop(_) => "loop",
            Node::Call(_) => "call",
            Node::Spawn(_) => "spawn",
            Node::End(_) => "end",
        }
    }

    /// The plain `next` of this node, if it has the field and it is set.
    pub fn next(&self) -> Option<&Next> {
        match self {
            Node::Empty(n) => n.next.as_ref(),
            Node::Assign(n) => n.next.as_ref(),
            Node::Service(n) => n.next.as_ref(),
            Node::User(n) => n.next.as_ref(),
            Node::Receive(n) => n.next.as_ref(),
            Node::Catch(n) => n.next.as_ref(),
            Node::Throw(n) => n.next.as_ref(),
            Node::Exclusive(n) => n.next.as_ref(),
            Node::Inclusive(n) => n.next.as_ref(),
            Node::Parallel(n) => n.next.as_ref(),
            Node::Complex(n) => n.next.as_ref(),
            Node::Subprocess(n) => n.next.as_ref(),
            Node::Loop(n) => n.next.as_ref(),
            Node::Call(n) => n.next.as_ref(),
            Node::Spawn(n) => n.next.as_ref(),
            Node::Event(_) | Node::EventSubprocess(_) | Node::End(_) => None,
        }
    }

    /// The boundary events of this node (empty for nodes that cannot carry them).
    pub fn boundary(&self) -> &[BoundaryEvent] {
        match self {
            Node::Service(n) => &n.boundary,
            Node::User(n) => &n.boundary,
            Node::Receive(n) => &n.boundary,
            Node::Subprocess(n) => &n.boundary,
            Node::Loop(n) => &n.boundary,
            Node::Call(n) => &n.boundary,
            _ => &[],
        }
    }

    /// The compensation handler named by this node, if any.
    pub fn compensation(&self) -> Option<&str> {
        match self {
            Node::Service(n) => n.compensation.as_deref(),
            Node::User(n) => n.compensation.as_deref(),
            Node::Subprocess(n) => n.compensation.as_deref(),
            Node::Call(n) => n.compensation.as_deref(),
            _ => None,
        }
    }

    /// The critical section this node runs in, if any.
    pub fn critical(&self) -> Option<&str> {
        match self {
            Node::Service(n) => n.critical.as_deref(),
            Node::User(n) => n.critical.as_deref(),
            Node::Receive(n) => n.critical.as_deref(),
            Node::Subprocess(n) => n.critical.as_deref(),
            Node::Loop(n) => n.critical.as_deref(),
            Node::Call(n) => n.critical.as_deref(),
            _ => None,
        }
    }

    /// The `missed` flow of this node, set or not with a `milestone`.
    pub fn missed(&self) -> Option<&str> {
        match self {
            Node::Service(n) => n.missed.as_deref(),
            Node::User(n) => n.missed.as_deref(),
            Node::Receive(n) => n.missed.as_deref(),
            Node::Subprocess(n) => n.missed.as_deref(),
            Node::Loop(n) => n.missed.as_deref(),
            Node::Call(n) => n.missed.as_deref(),
            _ => None,
        }
    }

    /// The milestone this node waits for, and where the flow goes when it has
    /// passed (None: `next`).
    pub fn milestone(&self) -> Option<(&str, Option<&str>)> {
        let (m, missed) = match self {
            Node::Service(n) => (&n.milestone, &n.missed),
            Node::User(n) => (&n.milestone, &n.missed),
            Node::Receive(n) => (&n.milestone, &n.missed),
            Node::Subprocess(n) => (&n.milestone, &n.missed),
            Node::Loop(n) => (&n.milestone, &n.missed),
            Node::Call(n) => (&n.milestone, &n.missed),
            _ => return None,
        };
        m.as_deref().map(|m| (m, missed.as_deref()))
    }

    /// The multi-instance settings of this node, if any.
    pub fn multi(&self) -> Option<&MultiInstance> {
        match self {
            Node::Service(n) => n.multi.as_ref(),
            Node::User(n) => n.multi.as_ref(),
            Node::Subprocess(n) => n.multi.as_ref(),
            Node::Call(n) => n.multi.as_ref(),
            _ => None,
        }
    }

    /// The nested scope (`start` and `nodes`) of a subprocess, event subprocess or loop.
    pub fn scope(&self) -> Option<(&str, &IndexMap<String, Node>)> {
        match self {
            Node::Subprocess(n) => Some((&n.start, &n.nodes)),
            Node::EventSubprocess(n) => Some((&n.start, &n.nodes)),
            Node::Loop(n) => Some((&n.start, &n.nodes)),
            _ => None,
        }
    }

    /// Mutable access to the nested nodes, for the loader.
    pub(crate) fn scope_nodes_mut(&mut self) -> Option<&mut IndexMap<String, Node>> {
        match self {
            Node::Subprocess(n) => Some(&mut n.nodes),
            Node::EventSubprocess(n) => Some(&mut n.nodes),
            Node::Loop(n) => Some(&mut n.nodes),
            _ => None,
        }
    }
}

/// `type: empty`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Empty {
    /// A label for diagrams.
    #[serde(default)]
    pub name: Option<String>,
    /// The node that follows.
    #[serde(default)]
    pub next: Option<Next>,
}

/// `type: assign`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Assign {
    /// A label for diagrams.
    #[serde(default)]
    pub name: Option<String>,
    /// Variables to set: name → literal or `=expression`. Evaluated in order.
    pub set: Mapping,
    /// The node that follows.
    #[serde(default)]
    pub next: Option<Next>,
}

/// `type: service`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Service {
    /// A label for diagrams.
    #[serde(default)]
    pub name: Option<String>,
    /// A critical section: at most one activity of this instance with the same
    /// section name runs at a time; others wait at their node, oldest first.
    #[serde(default)]
    pub critical: Option<String>,
    /// A milestone (workflow pattern 18): the activity starts only while a
    /// token of its scope waits at this node; until then its token waits here.
    #[serde(default)]
    pub milestone: Option<String>,
    /// Where the flow goes when the milestone has passed for good (no token of
    /// the scope waits at it or can still reach it): by default `next`, without
    /// running this activity.
    #[serde(default)]
    pub missed: Option<String>,
    /// The action a plugin registers (`crm.assign`).
    #[schemars(example = &"crm.assign")]
    pub action: String,
    /// The action's parameters: name → literal or `=expression`.
    #[serde(default, rename = "with")]
    pub input: Mapping,
    /// The variable that receives the action's whole result.
    #[serde(default)]
    pub result: Option<String>,
    /// Variables to set from the result: name → `=expression` over `result`.
    #[serde(default)]
    pub out: Mapping,
    /// How many times a failing call is tried again before it becomes an incident.
    #[serde(default)]
    pub retries: Option<u32>,
    /// The wait before the first retry (ISO 8601 duration); doubled at each retry.
    #[serde(default)]
    pub backoff: Option<String>,
    /// The handler that undoes this activity (a node id in the same scope).
    #[serde(default)]
    pub compensation: Option<String>,
    /// Run once per item.
    #[serde(default)]
    pub multi: Option<MultiInstance>,
    /// Boundary events.
    #[serde(default)]
    pub boundary: Vec<BoundaryEvent>,
    /// The node that follows.
    #[serde(default)]
    pub next: Option<Next>,
}

/// `type: user`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct User {
    /// The task's title in inboxes.
    #[serde(default)]
    pub name: Option<String>,
    /// A critical section: at most one activity of this instance with the same
    /// section name runs at a time; others wait at their node, oldest first.
    #[serde(default)]
    pub critical: Option<String>,
    /// A milestone (workflow pattern 18): the activity starts only while a
    /// token of its scope waits at this node; until then its token waits here.
    #[serde(default)]
    pub milestone: Option<String>,
    /// Where the flow goes when the milestone has passed for good (no token of
    /// the scope waits at it or can still reach it): by default `next`, without
    /// running this activity.
    #[serde(default)]
    pub missed: Option<String>,
    /// What the person is asked to do.
    #[serde(default)]
    pub description: Option<String>,
    /// The person the task is assigned to: a user name or `=expression`.
    #[serde(default)]
    #[schemars(schema_with = "schema::name_or_expression", example = &"=assignment.owner")]
    pub assignee: Option<Value>,
    /// People who may claim the task: a list of user names (each may be
    /// `=expression`), or one name or `=expression`.
    #[serde(default)]
    #[schemars(schema_with = "schema::names", example = schema::example_users())]
    pub candidate_users: Option<Value>,
    /// Groups whose members may claim the task: a list of group names (each may be
    /// `=expression`), or one name or `=expression`.
    #[serde(default)]
    #[schemars(schema_with = "schema::names", example = schema::example_groups())]
    pub candidate_groups: Option<Value>,
    /// People who may never hold or complete the task, whatever their groups: a list
    /// of names, or `=expression`. The four-eyes rule of an approval: its requester
    /// and earlier approvers. They do not see it among their groups' tasks, cannot
    /// claim it or be given it, and an assignee or candidate among them is dropped.
    #[serde(default)]
    #[schemars(schema_with = "schema::names", example = "=[requester, quote.owner]")]
    pub exclude: Option<Value>,
    /// The form the person completes: field name → field.
    #[serde(default)]
    #[schemars(transform = schema::var_keys)]
    pub form: IndexMap<String, FormField>,
    /// The variable that receives who completed the task (their user name), for
    /// later steps such as "the previous approver's supervisor".
    #[serde(default)]
    pub completed_by: Option<String>,
    /// When the task is due: a duration from its creation (`P2BD`) or a date
    /// (`{ date: =deadline }`); it cannot repeat.
    #[serde(default)]
    pub due: Option<TimerDef>,
    /// Priority from 0 to 100 (default 50), or `=expression`.
    #[serde(default)]
    #[schemars(schema_with = "schema::priority")]
    pub priority: Option<Value>,
    /// The handler that undoes this activity (a node id in the same scope).
    #[serde(default)]
    pub compensation: Option<String>,
    /// One task per item.
    #[serde(default)]
    pub multi: Option<MultiInstance>,
    /// Boundary events (deadlines, reminders, cancellations).
    #[serde(default)]
    pub boundary: Vec<BoundaryEvent>,
    /// The node that follows.
    #[serde(default)]
    pub next: Option<Next>,
}

/// `type: receive`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Receive {
    /// A label for diagrams.
    #[serde(default)]
    pub name: Option<String>,
    /// A critical section: at most one activity of this instance with the same
    /// section name runs at a time; others wait at their node, oldest first.
    #[serde(default)]
    pub critical: Option<String>,
    /// A milestone (workflow pattern 18): the activity starts only while a
    /// token of its scope waits at this node; until then its token waits here.
    #[serde(default)]
    pub milestone: Option<String>,
    /// Where the flow goes when the milestone has passed for good (no token of
    /// the scope waits at it or can still reach it): by default `next`, without
    /// running this activity.
    #[serde(default)]
    pub missed: Option<String>,
    /// The message name it waits for.
    pub message: String,
    /// The correlation key (CEL over the instance's variables); defaults to the
    /// instance's business key.
    #[serde(default)]
    pub key: Option<Expr>,
    /// Variables to set from the message: name → `=expression` over `message`. Without
    /// it, the message's variables are merged into the scope.
    #[serde(default)]
    pub out: Mapping,
    /// Boundary events.
    #[serde(default)]
    pub boundary: Vec<BoundaryEvent>,
    /// The node that follows.
    #[serde(default)]
    pub next: Option<Next>,
}

/// `type: catch`: exactly one of `message`, `timer`, `signal`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Catch {
    /// A label for diagrams.
    #[serde(default)]
    pub name: Option<String>,
    /// Waits for a message of this name.
    #[serde(default)]
    pub message: Option<String>,
    /// The message's correlation key; defaults to the instance's business key.
    #[serde(default)]
    pub key: Option<Expr>,
    /// Variables to set from the message: name → `=expression` over `message`.
    #[serde(default)]
    pub out: Mapping,
    /// Waits for a timer (BPML delay).
    #[serde(default)]
    pub timer: Option<TimerDef>,
    /// Waits for a signal (BPML synch).
    #[serde(default)]
    pub signal: Option<String>,
    /// The node that follows.
    #[serde(default)]
    pub next: Option<Next>,
}

/// What a throw or end event raises: at most one of these.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Throw {
    /// A label for diagrams.
    #[serde(default)]
    pub name: Option<String>,
    /// Sends a message of this name (to other processes).
    #[serde(default)]
    pub message: Option<String>,
    /// The sent message's correlation key (CEL).
    #[serde(default)]
    pub key: Option<Expr>,
    /// The sent message's variables: name → literal or `=expression`.
    #[serde(default)]
    pub payload: Mapping,
    /// Broadcasts this signal (BPML raise).
    #[serde(default)]
    pub signal: Option<String>,
    /// Raises this escalation code (non-critical; the flow goes on unless caught by an
    /// interrupting boundary).
    #[serde(default)]
    pub escalation: Option<String>,
    /// Raises this error code (BPML fault); the flow does not go on.
    #[serde(default)]
    pub error: Option<String>,
    /// Compensates: `all` completed activities of the scope in reverse order, or one
    /// activity by id (BPML compensate).
    #[serde(default)]
    pub compensate: Option<String>,
    /// The node that follows (not after an error).
    #[serde(default)]
    pub next: Option<Next>,
}

/// `type: end`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct End {
    /// A label for diagrams.
    #[serde(default)]
    pub name: Option<String>,
    /// Ends the whole instance (or the enclosing subprocess), cancelling every other path.
    #[serde(default)]
    pub terminate: bool,
    /// Ends with this error code (BPML fault), caught by a boundary error event outside.
    #[serde(default)]
    pub error: Option<String>,
    /// Ends with this escalation code.
    #[serde(default)]
    pub escalation: Option<String>,
    /// Sends a message of this name as it ends.
    #[serde(default)]
    pub message: Option<String>,
    /// The sent message's correlation key (CEL).
    #[serde(default)]
    pub key: Option<Expr>,
    /// The sent message's variables.
    #[serde(default)]
    pub payload: Mapping,
    /// Broadcasts this signal as it ends.
    #[serde(default)]
    pub signal: Option<String>,
    /// Compensates `all` completed activities of the scope, or one by id, as it ends.
    #[serde(default)]
    pub compensate: Option<String>,
}

/// `type: exclusive`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Exclusive {
    /// A label for diagrams.
    #[serde(default)]
    pub name: Option<String>,
    /// Conditions tried in order; the first that holds wins.
    #[serde(default)]
    pub branches: Vec<Branch>,
    /// Where to go when no condition holds.
    #[serde(default)]
    pub default: Option<String>,
    /// As a merge (no branches): the node that follows.
    #[serde(default)]
    pub next: Option<Next>,
}

/// `type: inclusive`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Inclusive {
    /// A label for diagrams.
    #[serde(default)]
    pub name: Option<String>,
    /// Every branch whose condition holds is taken.
    #[serde(default)]
    pub branches: Vec<Branch>,
    /// Where to go when no condition holds.
    #[serde(default)]
    pub default: Option<String>,
    /// As a join (no branches): the node that follows.
    #[serde(default)]
    pub next: Option<Next>,
}

/// `type: complex`: BPMN's complex gateway as a join. Each round it waits for
/// tokens on its incoming flows; once `activation` holds it lets one token
/// through, and the branches that have not arrived are either waited for and
/// absorbed (`rest: wait`, the default: the next round starts when every flow
/// has delivered) or withdrawn at once (`rest: cancel`).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Complex {
    /// A label for diagrams.
    #[serde(default)]
    pub name: Option<String>,
    /// When to fire: a condition over `arrived` (incoming flows a token has come
    /// from this round), `total` (incoming flows) and the variables, for example
    /// `arrived >= 2`.
    pub activation: Expr,
    /// The branches still to come when it fires.
    #[serde(default)]
    pub rest: Rest,
    /// The node that follows.
    #[serde(default)]
    pub next: Option<Next>,
}

/// What a complex gateway does with the branches that have not arrived when it
/// fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
#[schemars(transform = schema::closed_set)]
pub enum Rest {
    /// Wait for them and absorb them as they arrive; the next round starts once
    /// every incoming flow has delivered (blocking discriminator, WCP 9/28/30/31).
    #[default]
    Wait,
    /// Withdraw them: every token of the scope that can still reach the gateway
    /// is cancelled, and the next round starts at once (WCP 29/32).
    Cancel,
}

/// `type: parallel`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Parallel {
    /// A label for diagrams.
    #[serde(default)]
    pub name: Option<String>,
    /// Every node that follows (a split), or one (a join).
    #[serde(default)]
    pub next: Option<Next>,
}

/// `type: event`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EventGateway {
    /// A label for diagrams.
    #[serde(default)]
    pub name: Option<String>,
    /// The events raced; at least two.
    pub events: Vec<GatewayEvent>,
}

/// `type: subprocess`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Subprocess {
    /// A label for diagrams.
    #[serde(default)]
    pub name: Option<String>,
    /// A critical section: at most one activity of this instance with the same
    /// section name runs at a time; others wait at their node, oldest first.
    #[serde(default)]
    pub critical: Option<String>,
    /// A milestone (workflow pattern 18): the activity starts only while a
    /// token of its scope waits at this node; until then its token waits here.
    #[serde(default)]
    pub milestone: Option<String>,
    /// Where the flow goes when the milestone has passed for good (no token of
    /// the scope waits at it or can still reach it): by default `next`, without
    /// running this activity.
    #[serde(default)]
    pub missed: Option<String>,
    /// Variables local to the subprocess.
    #[serde(default)]
    pub variables: IndexMap<String, VariableDef>,
    /// The first node inside.
    pub start: String,
    /// The nodes inside, by id.
    pub nodes: IndexMap<String, Node>,
    /// The handler that undoes this activity (a node id in the same scope).
    #[serde(default)]
    pub compensation: Option<String>,
    /// Run the subprocess once per item (BPML foreach).
    #[serde(default)]
    pub multi: Option<MultiInstance>,
    /// Boundary events.
    #[serde(default)]
    pub boundary: Vec<BoundaryEvent>,
    /// The node that follows.
    #[serde(default)]
    pub next: Option<Next>,
}

/// `type: event_subprocess`: exactly one of `message`, `timer`, `signal`, `error`,
/// `escalation` triggers it.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EventSubprocess {
    /// A label for diagrams.
    #[serde(default)]
    pub name: Option<String>,
    /// Triggered by a message of this name.
    #[serde(default)]
    pub message: Option<String>,
    /// The message's correlation key; defaults to the instance's business key.
    #[serde(default)]
    pub key: Option<Expr>,
    /// Triggered by a timer.
    #[serde(default)]
    pub timer: Option<TimerDef>,
    /// Triggered by a signal.
    #[serde(default)]
    pub signal: Option<String>,
    /// Triggered by an error with this code in the enclosing scope (`"*"`: any).
    #[serde(default)]
    pub error: Option<String>,
    /// Triggered by an escalation with this code in the enclosing scope (`"*"`: any).
    #[serde(default)]
    pub escalation: Option<String>,
    /// Cancel the enclosing scope when triggered (default), or run beside it.
    #[serde(default = "yes")]
    pub interrupting: bool,
    /// The first node inside.
    pub start: String,
    /// The nodes inside, by id.
    pub nodes: IndexMap<String, Node>,
}

/// `type: loop`: exactly one of `while` (tested before each run) or `until` (tested
/// after each run).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Loop {
    /// A label for diagrams.
    #[serde(default)]
    pub name: Option<String>,
    /// A critical section: at most one activity of this instance with the same
    /// section name runs at a time; others wait at their node, oldest first.
    #[serde(default)]
    pub critical: Option<String>,
    /// A milestone (workflow pattern 18): the activity starts only while a
    /// token of its scope waits at this node; until then its token waits here.
    #[serde(default)]
    pub milestone: Option<String>,
    /// Where the flow goes when the milestone has passed for good (no token of
    /// the scope waits at it or can still reach it): by default `next`, without
    /// running this activity.
    #[serde(default)]
    pub missed: Option<String>,
    /// Run the body while this holds, testing before each run (BPML while).
    #[serde(default, rename = "while")]
    pub while_: Option<Expr>,
    /// Run the body until this holds, testing after each run (BPML until).
    #[serde(default)]
    pub until: Option<Expr>,
    /// A guard: after this many runs the loop raises an incident (default 1000).
    #[serde(default)]
    pub max_iterations: Option<u32>,
    /// The first node of the body.
    pub start: String,
    /// The nodes of the body, by id.
    pub nodes: IndexMap<String, Node>,
    /// Boundary events.
    #[serde(default)]
    pub boundary: Vec<BoundaryEvent>,
    /// The node that follows.
    #[serde(default)]
    pub next: Option<Next>,
}

/// `type: call`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Call {
    /// A label for diagrams.
    #[serde(default)]
    pub name: Option<String>,
    /// A critical section: at most one activity of this instance with the same
    /// section name runs at a time; others wait at their node, oldest first.
    #[serde(default)]
    pub critical: Option<String>,
    /// A milestone (workflow pattern 18): the activity starts only while a
    /// token of its scope waits at this node; until then its token waits here.
    #[serde(default)]
    pub milestone: Option<String>,
    /// Where the flow goes when the milestone has passed for good (no token of
    /// the scope waits at it or can still reach it): by default `next`, without
    /// running this activity.
    #[serde(default)]
    pub missed: Option<String>,
    /// The id of the process to call.
    pub process: String,
    /// A pinned version; the latest deployed when absent.
    #[serde(default)]
    pub version: Option<u32>,
    /// The child's business key: literal or `=expression`.
    #[serde(default)]
    #[schemars(schema_with = "schema::business_key")]
    pub business_key: Option<Value>,
    /// The child's variables: name → literal or `=expression` over the parent's.
    #[serde(default, rename = "in")]
    pub input: Mapping,
    /// Variables set in the parent when the child ends: name → `=expression` over the
    /// child's variables.
    #[serde(default)]
    pub out: Mapping,
    /// The handler that undoes this activity (a node id in the same scope).
    #[serde(default)]
    pub compensation: Option<String>,
    /// Call once per item.
    #[serde(default)]
    pub multi: Option<MultiInstance>,
    /// Boundary events (an error ending the child reaches an error boundary here).
    #[serde(default)]
    pub boundary: Vec<BoundaryEvent>,
    /// The node that follows.
    #[serde(default)]
    pub next: Option<Next>,
}

/// `type: spawn`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Spawn {
    /// A label for diagrams.
    #[serde(default)]
    pub name: Option<String>,
    /// The id of the process to start.
    pub process: String,
    /// A pinned version; the latest deployed when absent.
    #[serde(default)]
    pub version: Option<u32>,
    /// The new instance's business key: literal or `=expression`.
    #[serde(default)]
    #[schemars(schema_with = "schema::business_key")]
    pub business_key: Option<Value>,
    /// The new instance's variables: name → literal or `=expression`.
    #[serde(default, rename = "in")]
    pub input: Mapping,
    /// The node that follows.
    #[serde(default)]
    pub next: Option<Next>,
}
