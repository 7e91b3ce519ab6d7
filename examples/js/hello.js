// hellojs: {"name": "x"} → {"payload": "Hello x!"}; greets the World without a name.
function fl_main(input) {
  const name = typeof input.name === "string" ? input.name : "World";
  console.log(`hello called with name=${name}`);
  return { payload: `Hello ${name}!` };
}
