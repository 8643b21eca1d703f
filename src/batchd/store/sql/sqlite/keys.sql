-- Tenants and API keys.

-- name: insert_tenant
INSERT INTO tenants (id, name, tier, created_at) VALUES (?, ?, ?, ?)
ON CONFLICT (name) DO NOTHING;

-- name: tenant_by_name
SELECT id, name, tier, created_at FROM tenants WHERE name = ?;

-- name: insert_key
INSERT INTO api_keys (id, tenant_id, key_hash, prefix, role, tier, owner, created_at, limits)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (key_hash) DO NOTHING;

-- name: live_key_by_hash
SELECT k.id, k.tenant_id, t.name, k.role, k.tier, k.owner, k.prefix, k.created_at,
       k.revoked_at, k.key_hash, k.limits
FROM api_keys k JOIN tenants t ON t.id = k.tenant_id
WHERE k.key_hash = ? AND k.revoked_at IS NULL;

-- name: key_by_id
SELECT k.id, k.tenant_id, t.name, k.role, k.tier, k.owner, k.prefix, k.created_at,
       k.revoked_at, k.key_hash, k.limits
FROM api_keys k JOIN tenants t ON t.id = k.tenant_id
WHERE k.id = ?;

-- name: set_role_by_hash
UPDATE api_keys SET role = ? WHERE key_hash = ? AND revoked_at IS NULL;

-- name: keys_of_tenant
-- Every tenant's keys when the tenant is NULL.
SELECT k.id, k.tenant_id, t.name, k.role, k.tier, k.owner, k.prefix, k.created_at,
       k.revoked_at, k.key_hash, k.limits
FROM api_keys k JOIN tenants t ON t.id = k.tenant_id
WHERE (? IS NULL OR k.tenant_id = ?)
ORDER BY k.created_at;

-- name: revoke_key
UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL;

-- name: count_live_keys
SELECT COUNT(*) FROM api_keys WHERE role = ? AND revoked_at IS NULL;
