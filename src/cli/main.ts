#!/usr/bin/env node
// The `drover` bin: runs the CLI on the process's arguments and exits with its code.
import { runCli } from './program.js';

const code = await runCli(process.argv.slice(2), { out: process.stdout, err: process.stderr, env: process.env });
// `drover start` resolves once the node has stopped; its signal handler exits by itself.
process.exitCode = code;
