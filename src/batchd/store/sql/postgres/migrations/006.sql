-- 6: the operator role. The bootstrap key becomes the operator (tenants and every tenant's
-- keys). Other admin keys stay admins, of their own tenant only. A bootstrap key is what
-- Access.bootstrap_admin made: tenant "default", owner "admin", role admin, tier enterprise,
-- every limit -1 (or no limits: keys made before per-key limits).
UPDATE api_keys SET role = 'operator'
WHERE role = 'admin' AND owner = 'admin' AND tier = 'enterprise'
    AND tenant_id IN (SELECT id FROM tenants WHERE name = 'default')
    AND (limits IS NULL
         OR limits = convert_to('{"max_batch_size":-1,"api_calls":-1,"items":-1,"cost_usd":-1}', 'UTF8'));
