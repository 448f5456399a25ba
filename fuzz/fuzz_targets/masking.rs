//! Masking personal values in stored delivery logs (`hookmesh_core::privacy`): for any values
//! (quotes, backslashes, JSON syntax, `</x>`, unicode …) placed in a JSON body as strings, keys
//! and numbers, the masked body is still valid JSON, no string in it still holds a value (when
//! the value has no `*` a mask could recreate), and masking never panics on any text.
#![no_main]

use hookmesh_core::privacy::{Masker, MIN_MASKED_LEN};
use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Value};

fn strings(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => out.push(s.clone()),
        Value::Array(a) => a.iter().for_each(|x| strings(x, out)),
        Value::Object(o) => o.values().for_each(|x| strings(x, out)),
        _ => {}
    }
}

fn run(u: &mut Unstructured) -> Result<()> {
    let values: Vec<String> = (0..u.int_in_range(1..=3)?).map(|_| u.arbitrary()).collect::<Result<_>>()?;
    let filler: String = u.arbitrary()?;
    let m = Masker::new(&values);
    let doc = json!({
        "a": values[0],
        "b": format!("{filler}{}{filler}", values[values.len() - 1]),
        "list": values,
        values[0].clone(): 36,
        "n": 7,
    });
    let mut body = doc.to_string();
    m.mask_body_in_place(&mut body);
    let back: Value = serde_json::from_str(&body).expect("a masked JSON body is still JSON");
    let mut left = Vec::new();
    strings(&back, &mut left);
    for v in values.iter().filter(|v| v.chars().count() >= MIN_MASKED_LEN && !v.contains('*')) {
        assert!(!left.iter().any(|s| s.contains(v.as_str())), "{v:?} survived masking in {body}");
    }
    // Any text at all: no panic.
    let mut text: String = u.arbitrary()?;
    m.mask_body_in_place(&mut text);
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let _ = run(&mut Unstructured::new(data));
});
