//! `regex` (FunLess ABI): `{"pattern": "...", "text": "..."}` → `{"matches": [...]}`, every
//! non-overlapping match of the pattern in the text. A bad pattern is a function error.
//! With Unicode tables it compiles to about 1 MB: the large module of the cold-start benchmark.

use fl_sdk::{Value, json};

#[unsafe(no_mangle)]
pub extern "C" fn __invoke(input_len: i32) -> i32 {
    fl_sdk::run(input_len, search)
}

fn search(args: Value) -> Result<Value, String> {
    let pattern = args
        .get("pattern")
        .and_then(Value::as_str)
        .unwrap_or(r"\p{L}+");
    let text = args
        .get("text")
        .and_then(Value::as_str)
        .unwrap_or("Hello bench!");
    let re = regex::Regex::new(pattern).map_err(|e| format!("bad pattern: {e}"))?;
    let matches: Vec<&str> = re.find_iter(text).map(|m| m.as_str()).collect();
    Ok(json!({ "matches": matches }))
}
