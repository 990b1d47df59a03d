import test from 'node:test';
import assert from 'node:assert/strict';
import { InvalidArgumentError } from 'commander';
import { addressArg, collectArg, intArg, parseValueArg, positiveNumberArg, splitAddress } from '../../../src/cli/args.js';

test('intArg accepts integers in range and refuses anything else', () => {
  const p = intArg(1, 99);
  assert.equal(p('1'), 1);
  assert.equal(p('99'), 99);
  for (const bad of ['0', '100', '1.5', 'x', '', '1e2', '0x10', '-1']) assert.throws(() => p(bad), InvalidArgumentError, bad);
});

test('positiveNumberArg accepts fractions and refuses zero, negatives and junk', () => {
  assert.equal(positiveNumberArg('0.5'), 0.5);
  assert.equal(positiveNumberArg('300'), 300);
  for (const bad of ['0', '-1', 'abc', '', 'Infinity']) assert.throws(() => positiveNumberArg(bad), InvalidArgumentError, bad);
});

test('addressArg wants HOST:PORT', () => {
  assert.equal(addressArg('127.0.0.1:7401'), '127.0.0.1:7401');
  assert.equal(addressArg('localhost:1'), 'localhost:1');
  assert.equal(addressArg('[::1]:7401'), '[::1]:7401');
  for (const bad of ['127.0.0.1', ':7401', 'host:0', 'host:65536', 'host:port', 'a b:1']) assert.throws(() => addressArg(bad), InvalidArgumentError, bad);
  assert.deepEqual(splitAddress('[::1]:7401'), { host: '::1', port: 7401 });
  assert.deepEqual(splitAddress('10.0.0.1:80'), { host: '10.0.0.1', port: 80 });
});

test('VALUE is JSON when it parses, else the string itself', () => {
  assert.equal(parseValueArg('42'), 42);
  assert.deepEqual(parseValueArg('{"a":[1,true,null]}'), { a: [1, true, null] });
  assert.equal(parseValueArg('"quoted"'), 'quoted');
  assert.equal(parseValueArg('hello'), 'hello');
  assert.equal(parseValueArg('{broken'), '{broken');
  assert.equal(parseValueArg(''), '');
  assert.equal(parseValueArg('true'), true);
});

test('collectArg gathers a repeated option', () => {
  assert.deepEqual(collectArg('b', collectArg('a', undefined)), ['a', 'b']);
});
