// After `npm run build`: imports the package by its name, as a user's code would, through
// package.json `exports`, and checks the public entry points are there.
const drover = await import('drover');
const missing = ['createRuntime', 'durable', 'defineJob', 'none', 'done', 'fail', 'DroverError'].filter(
  (n) => typeof drover[n] !== 'function',
);
if (missing.length > 0) {
  console.error(`exports missing from 'drover': ${missing.join(', ')}`);
  process.exit(1);
}
console.log(`import from 'drover' works: ${Object.keys(drover).length} exports`);
const testing = await import('drover/testing');
if (typeof testing.createTestRuntime !== 'function') {
  console.error(`'drover/testing' does not export createTestRuntime`);
  process.exit(1);
}

// Then the package as a consumer installs it (CI runs this file after the build).
await import('./check-package.mjs');
