import type { KmsConfig } from '../config.js';
import { isoSeconds } from '../domain/dates.js';
import { keyArn } from '../domain/ids.js';
import { formatRotationInterval } from '../domain/rotation.js';
import type { Instance } from '../domain/instance.js';
import type { Key } from '../domain/key.js';

/** DescribeKey's KeyMetadata, field for field as alibaba-api.md §3.1 lists it (plus `RotationFailure`, below). */
export function keyMetadata(key: Key, config: Pick<KmsConfig, 'region' | 'accountId'>): Record<string, unknown> {
  const rotationShown = key.automaticRotation !== 'Disabled';
  return {
    Arn: keyArn(config.region, config.accountId, key.id),
    AutomaticRotation: key.automaticRotation,
    CreationDate: isoSeconds(key.createdAt),
    Creator: key.creator,
    ...(key.instanceId ? { DKMSInstanceId: key.instanceId } : {}),
    ...(key.state === 'PendingDeletion' && key.deleteDate ? { DeleteDate: isoSeconds(key.deleteDate) } : {}),
    DeletionProtection: key.deletionProtection ? 'Enabled' : 'Disabled',
    DeletionProtectionDescription: key.deletionProtectionDescription,
    Description: key.description,
    KeyId: key.id,
    KeySpec: key.keySpec,
    KeyState: key.state,
    KeyUsage: key.keyUsage,
    LastRotationDate: key.lastRotationDate ? isoSeconds(key.lastRotationDate) : '',
    MaterialExpireTime: key.primaryMaterialExpireAt ? isoSeconds(key.primaryMaterialExpireAt) : '',
    ...(rotationShown && key.nextRotationDate ? { NextRotationDate: isoSeconds(key.nextRotationDate) } : {}),
    Origin: key.origin,
    PrimaryKeyVersion: key.primaryVersionId ?? '',
    ProtectionLevel: key.protectionLevel,
    ...(rotationShown && key.rotationIntervalSeconds ? { RotationInterval: formatRotationInterval(key.rotationIntervalSeconds) } : {}),
    // hsm-kms extension: why the due automatic rotation did not happen (e.g. the instance's key
    // quota); present only until a rotation succeeds or rotation is turned off. The SDKs
    // ignore it; `kms key describe` and the console show it.
    ...(key.rotationFailure ? { RotationFailure: key.rotationFailure } : {}),
  };
}

/** GetKmsInstance's KmsInstance (alibaba-api.md §3.6), with the fields a local instance has. */
export function kmsInstance(instance: Instance, config: Pick<KmsConfig, 'region'>): Record<string, unknown> {
  return {
    InstanceId: instance.id,
    InstanceName: instance.name,
    Status: instance.status,
    Spec: instance.qps,
    KeyNum: instance.keyQuota,
    SecretNum: '0',
    VpcNum: 0,
    VpcId: '',
    VswitchIds: [],
    ZoneIds: [],
    BindVpcs: { BindVpc: [] },
    CaCertificateChainPem: '',
    ChargeType: 'PREPAY',
    ProductType: instance.type === 'HSM' ? 'kms_ddi_public_intl' : 'kms_ppi_public_intl',
    ProductVersion: '3',
    SaleStatus: 'NORMAL',
    StartDate: isoSeconds(instance.createdAt),
    EndDate: '',
    CreateTime: isoSeconds(instance.createdAt),
    Log: 0,
    LogStorage: 0,
    DeletionProtection: false,
    DeletionProtectionDescription: '',
    // Not Alibaba fields, but what an operator of this service needs to see.
    InstanceType: instance.type,
    KeyStorageMechanism: instance.keyStorage,
    RegionId: config.region,
  };
}
