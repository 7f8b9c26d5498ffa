import { createRequire } from 'node:module';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type TestServer, startServer } from '../helpers/server.js';

/**
 * A third client nobody tuned the service for: `@alicloud/pop-core`'s RPCClient, which sends
 * every parameter (common ones too) in the query for GET and in a form body for POST. The
 * request edge must accept exactly what it sends.
 */
const require = createRequire(import.meta.url);
type RpcClient = { request(action: string, params: object, opts: object): Promise<Record<string, any>> };
const RPCClient = require('@alicloud/pop-core').RPCClient as new (config: object) => RpcClient;

let server: TestServer;
let client: RpcClient;

beforeAll(async () => {
  server = await startServer();
  client = new RPCClient({
    accessKeyId: server.admin.accessKeyId,
    accessKeySecret: server.admin.accessKeySecret,
    endpoint: `http://${server.endpoint}`,
    apiVersion: '2016-01-20',
  });
});

afterAll(async () => {
  await server?.stop();
});

describe.each(['GET', 'POST'])('pop-core RPCClient over %s', (method) => {
  it('CreateKey → Encrypt → Decrypt on both tiers', async () => {
    for (const instanceId of [server.hsmInstanceId, server.softwareInstanceId]) {
      const created = await client.request('CreateKey', { DKMSInstanceId: instanceId, Description: 'pop-core' }, { method });
      const keyId = created['KeyMetadata'].KeyId as string;
      expect(created['KeyMetadata'].DKMSInstanceId).toBe(instanceId);
      const enc = await client.request('Encrypt', { KeyId: keyId, Plaintext: 'hello pop-core', EncryptionContext: '{"app":"pop"}' }, { method });
      expect(enc['KeyId']).toBe(keyId);
      const dec = await client.request('Decrypt', { CiphertextBlob: enc['CiphertextBlob'], EncryptionContext: '{"app":"pop"}' }, { method });
      expect(dec).toMatchObject({ KeyId: keyId, Plaintext: 'hello pop-core' });
    }
  });

  it('indexed parameters (TagResources Tag.N.Key) and errors come through as Alibaba codes', async () => {
    const created = await client.request('CreateKey', { DKMSInstanceId: server.softwareInstanceId }, { method });
    const keyId = created['KeyMetadata'].KeyId as string;
    await client.request('TagResources', { ResourceType: 'key', ResourceId: [keyId], Tag: [{ Key: 'team', Value: 'pop' }] }, { method });
    const tags = await client.request('ListResourceTags', { KeyId: keyId }, { method });
    expect(tags['Tags'].Tag).toEqual([{ KeyId: keyId, TagKey: 'team', TagValue: 'pop' }]);
    await expect(client.request('DescribeKey', {}, { method })).rejects.toMatchObject({ code: 'MissingParameter' });
  });
});
