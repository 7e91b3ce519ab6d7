// `{{name}}`: a FunLess function in JavaScript, run by the workers' JavaScript engine (no build
// step: `fl fn create {{name}} .` uploads this file). It gets the invocation's JSON arguments
// and returns the JSON the caller receives; a thrown error is the caller's 422.
function fl_main(args) {
  const name = typeof args.name === "string" ? args.name : "World";
  console.log(`greeting ${name}`);
  return { payload: `Hello ${name}!` };
}
