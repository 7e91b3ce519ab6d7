//! `fail` (FunLess ABI): always fails, reporting `intentional failure: <the args JSON>` through
//! `__insert_error` and returning 1 from `__invoke`.

#[unsafe(no_mangle)]
pub extern "C" fn __invoke(input_len: i32) -> i32 {
    let input = fl_sdk::read_input(usize::try_from(input_len).unwrap_or(0));
    let args = String::from_utf8_lossy(&input);
    fl_sdk::error(&format!("intentional failure: {args}"));
    1
}
