// envjs: answers {"env": {...}}, its configuration (`fl fn config set`), which JavaScript
// functions get as the second argument of their main, a frozen object of strings.
function fl_main(input, config) {
  return { env: config, frozen: Object.isFrozen(config) };
}
