//! The JavaScript engine of FunLess functions: QuickJS (through rquickjs) compiled to a
//! FunLess-ABI module. One engine serves every JavaScript function; the function itself is
//! only its source, which the worker hands over through the `fl_js` imports.
//!
//! Life of an invocation: the worker instantiates this module (from its pre-initialised
//! snapshot: runtime, context and the prelude already built, see `wizer-initialize`), calls
//! `__invoke`, which evaluates the source, calls `fl_main(input, config)` (or the default
//! export; `config` is the function's configuration, its WASI environment, as an object),
//! drives promises and timers until the result settles, and hands the JSON result or the
//! error to the host. Every invocation gets a fresh instance, so nothing leaks between them.
//!
//! A long-running service is the same source run through `__run_service`: its main gets its
//! configuration and a `service` object (`stopping`, and `stopped`, a promise that settles when
//! the platform asks it to stop), and the event loop runs until its promise settles (or, for a
//! main that returns at once, until no timer is left).

use std::cell::OnceCell;
use std::time::Duration;

use rquickjs::promise::PromiseState;
use rquickjs::{
    CatchResultExt, CaughtError, Context, Ctx, Function, Module, Object, Runtime, Value,
    context::EvalOptions, qjs,
};

/// Console, timers, sleep and fetch, written in JavaScript.
const PRELUDE: &str = include_str!("prelude.js");
/// The name errors and stacks give the function's source.
const FILENAME: &str = "function.js";
/// Most bytes of a response body `fetch` reads.
const MAX_FETCH_BODY: usize = 1024 * 1024;
/// Longest sleep of a service's event loop between looks at the platform's stop request.
const STOP_POLL: Duration = Duration::from_millis(100);

/// The function's source, provided by the worker.
mod source {
    #[link(wasm_import_module = "fl_js")]
    unsafe extern "C" {
        /// Length of the function's source in bytes.
        pub(crate) fn __source_len() -> i32;
        /// Writes the function's source at `ptr` (exactly `__source_len()` bytes).
        pub(crate) fn __get_source(ptr: i32);
        /// 1 once the platform asked the service this instance runs to stop (0 otherwise,
        /// and always 0 for a function).
        pub(crate) fn __stopping() -> i32;
    }

    pub(crate) fn stopping() -> bool {
        // SAFETY: plain host call without pointers.
        unsafe { __stopping() != 0 }
    }

    pub(crate) fn read() -> Result<String, String> {
        // SAFETY: plain host call without pointers.
        let len = usize::try_from(unsafe { __source_len() })
            .map_err(|_| "invalid source length".to_string())?;
        let mut buf = Vec::<u8>::with_capacity(len);
        if len > 0 {
            // SAFETY: the buffer has room for `len` bytes and the host writes exactly that.
            unsafe {
                __get_source(buf.as_mut_ptr() as usize as i32);
                buf.set_len(len);
            }
        }
        String::from_utf8(buf).map_err(|_| "the JavaScript source is not valid UTF-8".to_string())
    }
}

thread_local! {
    static ENGINE: OnceCell<Result<Engine, String>> = const { OnceCell::new() };
}

/// A QuickJS runtime and its one context, with the prelude evaluated.
struct Engine {
    _runtime: Runtime,
    context: Context,
}

impl Engine {
    fn new() -> Result<Self, String> {
        let runtime = Runtime::new().map_err(|e| format!("cannot start QuickJS: {e}"))?;
        let context = Context::full(&runtime).map_err(|e| format!("cannot start QuickJS: {e}"))?;
        context.with(|ctx| {
            enable_stack_check(&ctx, JS_STACK_BYTES);
            install_natives(&ctx).catch(&ctx).map_err(|e| describe(&e))?;
            ctx.eval::<(), _>(PRELUDE)
                .catch(&ctx)
                .map_err(|e| format!("the engine's prelude failed: {}", describe(&e)))
        })?;
        Ok(Self {
            _runtime: runtime,
            context,
        })
    }

    /// Runs the function on JSON `input`; the JSON result or the error message.
    fn invoke(&self, source: &str, input: &[u8]) -> Result<String, String> {
        self.context.with(|ctx| {
            let main = load(&ctx, source)?;
            let args = parse_input(&ctx, input)?;
            let config = environment(&ctx)?;
            let returned: Value = main
                .call((args, config))
                .catch(&ctx)
                .map_err(|e| report(&e))?;
            let value = settle(&ctx, returned, Mode::Function)?;
            let text = ctx
                .json_stringify(value)
                .catch(&ctx)
                .map_err(|e| format!("the result is not JSON: {}", describe(&e)))?;
            match text {
                Some(text) => text.to_string().map_err(|e| e.to_string()),
                None => Ok("null".into()),
            }
        })
    }

    /// Runs a service's main on its JSON configuration, with the `service` object, until it
    /// ends; the error message if it threw.
    fn run_service(&self, source: &str, input: &[u8]) -> Result<(), String> {
        self.context.with(|ctx| {
            let main = load(&ctx, source)?;
            let config = parse_input(&ctx, input)?;
            let control: Value = event_loop(&ctx)?
                .get("service")
                .map_err(|e| format!("the engine's service object is missing: {e}"))?;
            let returned: Value = main
                .call((config, control))
                .catch(&ctx)
                .map_err(|e| report(&e))?;
            settle(&ctx, returned, Mode::Service).map(drop)
        })
    }

    /// Compiles the source without running it: syntax errors at upload, not at first call.
    fn check(&self, source: &str) -> Result<(), String> {
        self.context.with(|ctx| {
            if is_module(source) {
                Module::declare(ctx.clone(), FILENAME, source)
                    .catch(&ctx)
                    .map(drop)
                    .map_err(|e| describe(&e))
            } else {
                compile_script(&ctx, source)
            }
        })
    }
}

/// Shadow-stack bytes JavaScript may use before a call throws `RangeError` (see
/// [`enable_stack_check`]): about 900 levels of plain recursion (~280 bytes each), within
/// the ~1,300 the worker's Wasm stack allows (~780 bytes of it each), so the script can catch
/// the error before Wasmtime's stack limit would end the instance.
const JS_STACK_BYTES: usize = 256 * 1024;

/// Turns QuickJS's stack check on. QuickJS leaves it off on WASI (`update_stack_limit` in
/// quickjs.c sets no limit for `__wasi__`), so deep recursion runs into Wasmtime's stack limit
/// instead: a trap that no script can catch, ending the instance. The check itself works on
/// wasm32, where C's stack (the shadow stack in linear memory) grows down from a fixed top, so
/// the limit is written into the runtime here: `JS_SetMaxStackSize` stores a marker in its
/// `stack_size` field, which locates the three fields `stack_size, stack_top, stack_limit`
/// (declared in that order in `struct JSRuntime`), and `stack_limit` becomes `stack_top -
/// bytes`. Nothing is written unless the marker is found exactly once, with an unset limit
/// after it and a top near this frame, as `JS_NewRuntime` recorded it. Runs before the
/// snapshot, so every instance starts with the limit in place. Returns whether it is on.
fn enable_stack_check(ctx: &Ctx<'_>, bytes: usize) -> bool {
    const MARKER: usize = 0x5a17_c0de;
    /// How far into the runtime the fields may be, in words (past its allocator and arena
    /// state: a few hundred in).
    const SCAN_WORDS: usize = 2048;
    let here = 0u8;
    let here = std::hint::black_box(&here) as *const u8 as usize;
    // SAFETY: the runtime pointer comes from a live context; the words read lie within linear
    // memory (a wasm32 load cannot reach outside it, and the runtime is far from its end),
    // and the one word written is `stack_limit`, located and checked as described above.
    unsafe {
        let rt = qjs::JS_GetRuntime(ctx.as_raw().as_ptr());
        qjs::JS_SetMaxStackSize(rt, MARKER as _);
        let words = rt.cast::<usize>();
        let found: Vec<usize> = (0..SCAN_WORDS)
            .filter(|&i| words.add(i).read() == MARKER)
            .collect();
        if let [at] = found[..] {
            let (top, limit) = (words.add(at + 1).read(), words.add(at + 2).read());
            if limit == 0 && top > bytes && top.abs_diff(here) < 64 * 1024 {
                words.add(at + 2).write(top - bytes);
                return true;
            }
        }
        qjs::JS_SetMaxStackSize(rt, 0);
        false
    }
}

/// `console`, `fetch` and `Math.random` reach the host through these (the prelude hides them).
fn install_natives(ctx: &Ctx<'_>) -> rquickjs::Result<()> {
    let globals = ctx.globals();
    globals.set(
        "__fl_log",
        Function::new(ctx.clone(), |line: String| fl_sdk::log(&line))?,
    )?;
    globals.set(
        "__fl_random",
        Function::new(ctx.clone(), || {
            // 53 random bits make a uniform double in [0, 1).
            let bits = getrandom::u64().unwrap_or(0) >> 11;
            bits as f64 / (1u64 << 53) as f64
        })?,
    )?;
    globals.set(
        "__fl_http",
        Function::new(
            ctx.clone(),
            |method: i32, url: String, headers: String, body: String| {
                let method = match method {
                    1 => fl_sdk::Method::Post,
                    2 => fl_sdk::Method::Put,
                    3 => fl_sdk::Method::Delete,
                    _ => fl_sdk::Method::Get,
                };
                let headers: Vec<(&str, &str)> = headers
                    .lines()
                    .filter_map(|line| line.split_once(':'))
                    .collect();
                let (status, bytes) =
                    fl_sdk::http_request(method, &url, &headers, body.as_bytes(), MAX_FETCH_BODY);
                vec![
                    status.to_string(),
                    String::from_utf8_lossy(&bytes).into_owned(),
                ]
            },
        )?,
    )?;
    Ok(())
}

/// Whether the source is an ES module (it has top-level `import` or `export` statements);
/// otherwise it is a script defining a global `fl_main`.
fn is_module(source: &str) -> bool {
    source.lines().any(|line| {
        let line = line.trim_start();
        ["export", "import"].iter().any(|keyword| {
            line.strip_prefix(keyword)
                .and_then(|rest| rest.chars().next())
                .is_some_and(|next| next.is_whitespace() || next == '{' || next == '*')
        })
    })
}

/// Evaluates the source and returns the function to call.
fn load<'js>(ctx: &Ctx<'js>, source: &str) -> Result<Function<'js>, String> {
    let candidates: Vec<Value<'js>> = if is_module(source) {
        let declared = Module::declare(ctx.clone(), FILENAME, source)
            .catch(ctx)
            .map_err(|e| report(&e))?;
        let (module, evaluated) = declared.eval().catch(ctx).map_err(|e| report(&e))?;
        // Top-level await: the module is ready when its evaluation promise settles.
        settle(ctx, evaluated.into_value(), Mode::Function)?;
        vec![
            module.get("default").unwrap_or_else(|_| Value::new_undefined(ctx.clone())),
            module.get("fl_main").unwrap_or_else(|_| Value::new_undefined(ctx.clone())),
        ]
    } else {
        let options = {
            let mut options = EvalOptions::default();
            options.global = true;
            options.strict = false;
            options.filename = Some(FILENAME.into());
            options
        };
        ctx.eval_with_options::<(), _>(source, options)
            .catch(ctx)
            .map_err(|e| report(&e))?;
        vec![
            ctx.globals()
                .get("fl_main")
                .unwrap_or_else(|_| Value::new_undefined(ctx.clone())),
        ]
    };
    candidates
        .into_iter()
        .find_map(|value| value.into_function())
        .ok_or_else(|| {
            "the JavaScript source defines no function fl_main(input) (nor a default export)"
                .to_string()
        })
}

/// Compiles a script without running it (QuickJS's compile-only evaluation).
fn compile_script(ctx: &Ctx<'_>, source: &str) -> Result<(), String> {
    let mut code = source.as_bytes().to_vec();
    code.push(0);
    let filename = c"function.js";
    // SAFETY: `code` is NUL-terminated and outlives the call, as QuickJS requires of the
    // input buffer; the returned value is freed here and nothing else keeps it.
    let compiled = unsafe {
        qjs::JS_Eval(
            ctx.as_raw().as_ptr(),
            code.as_ptr().cast(),
            source.len() as _,
            filename.as_ptr(),
            (qjs::JS_EVAL_TYPE_GLOBAL | qjs::JS_EVAL_FLAG_COMPILE_ONLY) as i32,
        )
    };
    // SAFETY: as above; `JS_IsException` only reads the tag.
    let failed = unsafe { qjs::JS_IsException(compiled) };
    // SAFETY: `compiled` was returned to us with one reference, released exactly once.
    unsafe { qjs::JS_FreeValue(ctx.as_raw().as_ptr(), compiled) };
    if failed {
        let error = CaughtError::from_error(ctx, rquickjs::Error::Exception);
        return Err(describe(&error));
    }
    Ok(())
}

/// The JSON input as a value (an empty input is an empty object).
fn parse_input<'js>(ctx: &Ctx<'js>, input: &[u8]) -> Result<Value<'js>, String> {
    if input.iter().all(u8::is_ascii_whitespace) {
        Object::new(ctx.clone())
            .map(Object::into_value)
            .map_err(|e| e.to_string())
    } else {
        ctx.json_parse(input.to_vec())
            .catch(ctx)
            .map_err(|e| format!("invalid JSON input: {}", describe(&e)))
    }
}

/// The function's configuration: its WASI environment (read at each invocation, never in
/// the snapshot), as a frozen object of strings.
fn environment<'js>(ctx: &Ctx<'js>) -> Result<Value<'js>, String> {
    let config = Object::new(ctx.clone()).map_err(|e| e.to_string())?;
    for (key, value) in std::env::vars_os() {
        // The platform only sets names and values that are UTF-8.
        if let (Some(key), Some(value)) = (key.to_str(), value.to_str()) {
            config.set(key, value).map_err(|e| e.to_string())?;
        }
    }
    let frozen: Value = ctx
        .globals()
        .get::<_, Object>("Object")
        .and_then(|object| object.get::<_, Function>("freeze"))
        .and_then(|freeze| freeze.call((config,)))
        .map_err(|e| format!("cannot build the configuration object: {e}"))?;
    Ok(frozen)
}

/// The prelude's event loop (`__fl_loop`).
fn event_loop<'js>(ctx: &Ctx<'js>) -> Result<Object<'js>, String> {
    ctx.globals()
        .get("__fl_loop")
        .map_err(|e| format!("the engine's event loop is missing: {e}"))
}

/// What the event loop runs for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// An invocation: until the result settles.
    Function,
    /// A service: also until no timer is left when main returned no promise, looking at the
    /// platform's stop request at least every [`STOP_POLL`].
    Service,
}

/// Drives promises and timers until `value` (when it is a promise) settles.
fn settle<'js>(ctx: &Ctx<'js>, value: Value<'js>, mode: Mode) -> Result<Value<'js>, String> {
    let promise = value.clone().into_promise();
    if promise.is_none() && mode == Mode::Function {
        while ctx.execute_pending_job() {}
        return Ok(value);
    }
    let timers = event_loop(ctx)?;
    let next: Function = timers.get("next").map_err(|e| e.to_string())?;
    let fire: Function = timers.get("fire").map_err(|e| e.to_string())?;
    let stop: Function = timers.get("stop").map_err(|e| e.to_string())?;
    let mut stopped = false;
    loop {
        while ctx.execute_pending_job() {}
        if mode == Mode::Service && !stopped && source::stopping() {
            stopped = true;
            stop.call::<_, ()>(()).catch(ctx).map_err(|e| report(&e))?;
            continue;
        }
        match promise.as_ref().map(|p| (p, p.state())) {
            Some((promise, PromiseState::Resolved)) => {
                return promise
                    .result::<Value>()
                    .unwrap_or_else(|| Ok(Value::new_undefined(ctx.clone())))
                    .catch(ctx)
                    .map_err(|e| report(&e));
            }
            Some((promise, PromiseState::Rejected)) => {
                let reason = promise
                    .result::<Value>()
                    .map(|r| r.catch(ctx).err())
                    .unwrap_or(None);
                return Err(reason.map_or_else(|| "the promise was rejected".into(), |e| report(&e)));
            }
            Some((_, PromiseState::Pending)) | None => {}
        }
        let wait: f64 = next.call(()).catch(ctx).map_err(|e| report(&e))?;
        let pause = match (mode, wait < 0.0) {
            // A service's main that returned at once is done when no timer is left.
            (Mode::Service, true) if promise.is_none() => return Ok(value),
            // A service may be waiting for `service.stopped`: until it was asked, wait for it.
            (Mode::Service, true) if !stopped => STOP_POLL,
            (Mode::Function, true) => {
                return Err(
                    "the function's promise never settles: no timer or job is left to settle it"
                        .into(),
                );
            }
            (Mode::Service, true) => {
                return Err(
                    "the service's promise never settles: it was asked to stop and no timer or job is left to settle it"
                        .into(),
                );
            }
            (Mode::Function, false) => Duration::from_micros((wait * 1000.0) as u64),
            (Mode::Service, false) => {
                Duration::from_micros((wait * 1000.0) as u64).min(STOP_POLL)
            }
        };
        if !pause.is_zero() {
            // A WASI sleep: the worker parks this instance without holding a thread.
            std::thread::sleep(pause);
        }
        fire.call::<_, ()>(()).catch(ctx).map_err(|e| report(&e))?;
    }
}

/// An error's one-line description ("TypeError: x is not a function").
fn describe(error: &CaughtError<'_>) -> String {
    match error {
        CaughtError::Exception(exception) => {
            let name: Option<String> = exception.get("name").ok();
            let message = exception.message().unwrap_or_default();
            match name {
                Some(name) if !name.is_empty() => format!("{name}: {message}"),
                _ => message,
            }
        }
        CaughtError::Value(value) => {
            let ctx = value.ctx();
            match ctx.json_stringify(value.clone()) {
                Ok(Some(text)) => text.to_string().unwrap_or_else(|_| format!("{value:?}")),
                _ => value
                    .as_string()
                    .and_then(|s| s.to_string().ok())
                    .unwrap_or_else(|| format!("{value:?}")),
            }
        }
        CaughtError::Error(error) => error.to_string(),
    }
}

/// Like [`describe`], and logs the stack of an uncaught error so the function's logs show it.
fn report(error: &CaughtError<'_>) -> String {
    let text = describe(error);
    if let CaughtError::Exception(exception) = error
        && let Some(stack) = exception.stack().filter(|s| !s.trim().is_empty())
    {
        fl_sdk::log(&format!("Uncaught {text}\n{}", stack.trim_end()));
    }
    text
}

fn with_engine<R>(f: impl FnOnce(&Engine) -> Result<R, String>) -> Result<R, String> {
    ENGINE.with(|cell| match cell.get_or_init(Engine::new) {
        Ok(engine) => f(engine),
        Err(e) => Err(e.clone()),
    })
}

/// Builds the runtime, the context and the prelude ahead of time: the worker snapshots the
/// module after calling this (Wizer), so invocations start with all of it in place.
#[unsafe(export_name = "wizer-initialize")]
pub extern "C" fn initialize() {
    ENGINE.with(|cell| {
        cell.get_or_init(Engine::new);
    });
}

/// Runs the function (FunLess ABI).
#[unsafe(no_mangle)]
pub extern "C" fn __invoke(input_len: i32) -> i32 {
    let outcome = usize::try_from(input_len)
        .map_err(|_| format!("invalid input length {input_len}"))
        .map(fl_sdk::read_input)
        .and_then(|input| {
            let source = source::read()?;
            with_engine(|engine| engine.invoke(&source, &input))
        });
    match outcome {
        Ok(json) => {
            fl_sdk::respond(json.as_bytes());
            0
        }
        Err(message) => {
            fl_sdk::error(&message);
            1
        }
    }
}

/// Runs a service (the source's main, given its JSON configuration) until it ends: 0 when it
/// returned or its promise resolved, 1 with the error reported when it threw.
#[unsafe(no_mangle)]
pub extern "C" fn __run_service(input_len: i32) -> i32 {
    let outcome = usize::try_from(input_len)
        .map_err(|_| format!("invalid input length {input_len}"))
        .map(fl_sdk::read_input)
        .and_then(|input| {
            let source = source::read()?;
            with_engine(|engine| engine.run_service(&source, &input))
        });
    match outcome {
        Ok(()) => 0,
        Err(message) => {
            fl_sdk::error(&message);
            1
        }
    }
}

/// Checks that the source compiles (0), or reports the syntax error (1).
#[unsafe(no_mangle)]
pub extern "C" fn __check() -> i32 {
    match source::read().and_then(|source| with_engine(|engine| engine.check(&source))) {
        Ok(()) => 0,
        Err(message) => {
            fl_sdk::error(&message);
            1
        }
    }
}
