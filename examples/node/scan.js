#!/usr/bin/env node
// Starts a reelscan scan and prints every JobUpdate of its WatchJob stream until the terminal one.
//
//   node scan.js [--server HOST:PORT] [--token TOKEN] [--force] [--json] PATH
//
// The .proto files are loaded at run time straight from this repository (protos/ and third_party/protos/), so
// there is no code generation step. Exit code, as `reelscan scan`: 0 succeeded, 1 failed, 2 usage error,
// 3 cancelled, 4 timed out.
'use strict';

const path = require('node:path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const REPO = path.resolve(__dirname, '..', '..');
const TERMINAL = {
  JOB_STATE_SUCCEEDED: 0,
  JOB_STATE_FAILED: 1,
  JOB_STATE_CANCELLED: 3,
  JOB_STATE_TIMED_OUT: 4,
};

function usage(message) {
  if (message) console.error(`scan.js: ${message}`);
  console.error('usage: node scan.js [--server HOST:PORT] [--token TOKEN] [--force] [--json] PATH');
  process.exit(2);
}

function parseArgs(argv) {
  const args = {server: process.env.REELSCAN_SERVER || '127.0.0.1:50051', token: process.env.REELSCAN_TOKEN};
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--server' || arg === '--token') {
      if (i + 1 >= argv.length) usage(`${arg} needs a value`);
      args[arg.slice(2)] = argv[++i];
    } else if (arg === '--force' || arg === '--json') {
      args[arg.slice(2)] = true;
    } else if (arg === '-h' || arg === '--help') {
      usage();
    } else if (arg.startsWith('-')) {
      usage(`unknown option ${arg}`);
    } else if (args.path === undefined) {
      args.path = path.resolve(arg);
    } else {
      usage(`unexpected argument ${arg}`);
    }
  }
  if (args.path === undefined) usage('PATH is required');
  return args;
}

function loadServices() {
  const definition = protoLoader.loadSync(['reelscan/v1/scan_service.proto', 'reelscan/v1/job_service.proto'], {
    includeDirs: [path.join(REPO, 'protos'), path.join(REPO, 'third_party', 'protos')],
    keepCase: true, // field names as in the .proto (job_id), not camelCase
    longs: Number, // int64 counts fit easily in a double
    enums: String, // 'JOB_STATE_RUNNING' rather than 2
    defaults: true, // every field present, even at its zero value
    oneofs: true,
  });
  return grpc.loadPackageDefinition(definition).reelscan.v1;
}

function describe(update) {
  const d = update.progress_detail || {};
  const parts = [`seq=${update.seq}`, update.state.replace('JOB_STATE_', ''), `${(update.progress * 100).toFixed(1)}%`];
  if (d.stage && d.stage !== 'JOB_STAGE_DONE') parts.push(d.stage.replace('JOB_STAGE_', '').toLowerCase());
  if (d.items_total) parts.push(`${d.items_done}/${d.items_total}`);
  if (d.current_item) parts.push(path.basename(d.current_item));
  return parts.join(' ');
}

function main() {
  const args = parseArgs(process.argv.slice(2));
  const v1 = loadServices();
  const credentials = grpc.credentials.createInsecure();
  const scans = new v1.ScanService(args.server, credentials);
  // Both clients share one connection: grpc-js pools subchannels by address and options.
  const jobs = new v1.JobService(args.server, credentials);
  const metadata = new grpc.Metadata();
  if (args.token) metadata.set('authorization', `Bearer ${args.token}`);

  const deadline = new Date(Date.now() + 30_000);
  scans.StartScan({path: args.path, recursive: true, force: Boolean(args.force)}, metadata, {deadline}, (err, res) => {
    if (err) {
      console.error(`StartScan failed: ${grpc.status[err.code]}: ${err.details}`);
      process.exit(1);
    }
    const job = res.job;
    if (!args.json) console.log(`job ${job.id}: scanning ${job.scan ? job.scan.path : args.path}`);
    // No deadline on the stream: it lasts as long as the job.
    const call = jobs.WatchJob({job_id: job.id}, metadata);
    let exitCode = null;
    call.on('data', (update) => {
      if (args.json) {
        delete update.job; // the embedded snapshot repeats the same facts
        console.log(JSON.stringify(update));
      } else {
        console.log(describe(update));
      }
      if (update.state in TERMINAL) {
        exitCode = TERMINAL[update.state];
        if (!args.json) {
          const r = update.result;
          console.log(`discovered ${r.discovered}, probed ${r.probed}, new ${r.new}, updated ${r.updated}, ` +
            `unchanged ${r.unchanged}, missing ${r.missing}, failed ${r.failed}`);
          if (update.error && update.error.message) console.log(`error: ${update.error.message}`);
        }
      }
    });
    call.on('error', (e) => {
      console.error(`WatchJob failed: ${grpc.status[e.code]}: ${e.details}`);
      process.exit(1);
    });
    call.on('end', () => {
      scans.close();
      jobs.close();
      // The server always sends the terminal update before ending the stream OK; if it did not (it shut down),
      // report a failure rather than pretend.
      process.exit(exitCode === null ? 1 : exitCode);
    });
  });
}

main();
