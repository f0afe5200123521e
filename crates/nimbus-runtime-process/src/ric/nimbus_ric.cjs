// nimbus's runtime interface client for Node.js.
//
// Loads the handler named by _HANDLER ("path/module.function", .js, .mjs or .cjs) from
// LAMBDA_TASK_ROOT and serves invocations over the AWS Lambda Runtime API at
// AWS_LAMBDA_RUNTIME_API, as Lambda's Node.js runtime does: async handlers, callback handlers
// (event, context, callback), and console output tagged with the request id. Node's standard
// library only.
'use strict';

const fs = require('fs');
const http = require('http');
const path = require('path');
const util = require('util');
const { pathToFileURL } = require('url');

const BASE = '/2018-06-01/runtime';
const [HOST, PORT] = (() => {
  const address = process.env.AWS_LAMBDA_RUNTIME_API || '127.0.0.1:9001';
  const at = address.lastIndexOf(':');
  return [address.slice(0, at), Number(address.slice(at + 1))];
})();
const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });

function call(method, route, body, headers) {
  return new Promise((resolve, reject) => {
    const request = http.request(
      { host: HOST, port: PORT, path: BASE + route, method, agent, headers: headers || {} },
      (response) => {
        const chunks = [];
        response.on('data', (chunk) => chunks.push(chunk));
        response.on('end', () =>
          resolve({ status: response.statusCode, headers: response.headers, body: Buffer.concat(chunks) }));
        response.on('error', reject);
      });
    request.on('error', reject);
    if (body !== undefined) request.write(body);
    request.end();
  });
}

let currentRequestId = undefined;
for (const [method, level, stream] of [
  ['log', 'INFO', process.stdout], ['info', 'INFO', process.stdout], ['debug', 'DEBUG', process.stdout],
  ['warn', 'WARN', process.stderr], ['error', 'ERROR', process.stderr], ['trace', 'TRACE', process.stderr],
]) {
  console[method] = (...args) => {
    const text = util.format(...args).replace(/\n/g, '\r');
    stream.write(`${new Date().toISOString()}\t${currentRequestId || 'undefined'}\t${level}\t${text}\n`);
  };
}

function errorDocument(error) {
  if (error instanceof Error) {
    return {
      errorType: error.name || 'Error',
      errorMessage: error.message,
      trace: String(error.stack || '').split('\n'),
    };
  }
  return { errorType: typeof error === 'string' ? 'string' : 'Error', errorMessage: String(error), trace: [] };
}

async function postError(route, error, type) {
  const document = errorDocument(error);
  console.error('Invoke Error', JSON.stringify(document));
  await call('POST', route, JSON.stringify(document), {
    'Content-Type': 'application/json',
    'Lambda-Runtime-Function-Error-Type': type,
  });
}

async function loadHandler() {
  const spec = process.env._HANDLER || '';
  const dot = spec.lastIndexOf('.');
  if (dot <= 0) throw Object.assign(new Error(`Bad handler ${spec}: expected module.function`), { name: 'Runtime.MalformedHandlerName' });
  const modulePath = spec.slice(0, dot);
  const name = spec.slice(dot + 1);
  const root = process.env.LAMBDA_TASK_ROOT || process.cwd();
  const file = ['.js', '.mjs', '.cjs'].map((ext) => path.join(root, modulePath + ext)).find((f) => fs.existsSync(f));
  if (!file) throw Object.assign(new Error(`Cannot find module '${modulePath}'`), { name: 'Runtime.ImportModuleError' });
  const loaded = await import(pathToFileURL(file).href);
  const handler = loaded[name] ?? (loaded.default && loaded.default[name]);
  if (typeof handler !== 'function') {
    throw Object.assign(new Error(`${modulePath}.${name} is undefined or not exported`), { name: 'Runtime.HandlerNotFound' });
  }
  return handler;
}

function makeContext(headers) {
  const deadline = Number(headers['lambda-runtime-deadline-ms'] || 0);
  const parse = (value) => { try { return value ? JSON.parse(value) : undefined; } catch { return undefined; } };
  return {
    awsRequestId: headers['lambda-runtime-aws-request-id'],
    invokedFunctionArn: headers['lambda-runtime-invoked-function-arn'],
    functionName: process.env.AWS_LAMBDA_FUNCTION_NAME,
    functionVersion: process.env.AWS_LAMBDA_FUNCTION_VERSION,
    memoryLimitInMB: process.env.AWS_LAMBDA_FUNCTION_MEMORY_SIZE,
    logGroupName: process.env.AWS_LAMBDA_LOG_GROUP_NAME,
    logStreamName: process.env.AWS_LAMBDA_LOG_STREAM_NAME,
    clientContext: parse(headers['lambda-runtime-client-context']),
    identity: parse(headers['lambda-runtime-cognito-identity']),
    callbackWaitsForEmptyEventLoop: true,
    getRemainingTimeInMillis: () => Math.max(0, deadline - Date.now()),
  };
}

function run(handler, event, context) {
  return new Promise((resolve, reject) => {
    let settled = false;
    const settle = (error, result) => {
      if (settled) return;
      settled = true;
      if (error !== undefined && error !== null) reject(error); else resolve(result);
    };
    context.done = settle;
    context.succeed = (result) => settle(null, result);
    context.fail = (error) => settle(error ?? new Error('handled'));
    try {
      const returned = handler(event, context, settle);
      if (returned && typeof returned.then === 'function') {
        returned.then((result) => settle(null, result), (error) => settle(error ?? new Error('rejected')));
      } else if (handler.length < 3) {
        settle(null, returned);
      }
    } catch (error) {
      settle(error);
    }
  });
}

async function main() {
  let handler;
  try {
    handler = await loadHandler();
  } catch (error) {
    await postError('/init/error', error, error.name || 'Runtime.ImportModuleError').catch(() => {});
    process.exit(1);
  }
  process.on('uncaughtException', (error) => {
    const route = currentRequestId ? `/invocation/${currentRequestId}/error` : '/init/error';
    postError(route, error, 'Runtime.UncaughtException').finally(() => process.exit(129));
  });
  process.on('unhandledRejection', (reason) => {
    const route = currentRequestId ? `/invocation/${currentRequestId}/error` : '/init/error';
    postError(route, reason, 'Runtime.UnhandledPromiseRejection').finally(() => process.exit(128));
  });
  for (;;) {
    const next = await call('GET', '/invocation/next');
    if (next.status !== 200) process.exit(0);
    const context = makeContext(next.headers);
    const requestId = context.awsRequestId;
    currentRequestId = requestId;
    if (next.headers['lambda-runtime-trace-id']) process.env._X_AMZN_TRACE_ID = next.headers['lambda-runtime-trace-id'];
    let event;
    try {
      event = next.body.length ? JSON.parse(next.body.toString('utf8')) : undefined;
      const result = await run(handler, event, context);
      const payload = result === undefined ? 'null' : JSON.stringify(result);
      await call('POST', `/invocation/${requestId}/response`, payload, { 'Content-Type': 'application/json' });
    } catch (error) {
      await postError(`/invocation/${requestId}/error`, error, 'Unhandled');
    }
  }
}

main().catch((error) => {
  process.stderr.write(`nimbus runtime client failed: ${error && error.stack || error}\n`);
  process.exit(1);
});
