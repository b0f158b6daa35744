-- pgbench script for scripts/bench-load (PLAIN_PG=1): a plain PostgreSQL implementation of
-- the consented read the vault's /v1/access does, as the issue states it: the citizen's key
-- unwrapped with pgcrypto, the fields decrypted, a hash-chained audit row inserted, one
-- transaction per request with synchronous commit. The schema is made by
-- scripts/bench-plain-pg-setup.sql.
\set c random(1, 1000)
BEGIN;
SELECT 1 FROM consents WHERE citizen = :c AND agency = 'national_police'
    AND purpose = 'road_safety_enforcement' AND expires > now();
SELECT f.name, convert_from(decrypt(f.ct, decrypt(k.wrapped, '\x000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f'::bytea, 'aes'), 'aes'), 'UTF8')
    FROM fields f JOIN citizen_keys k USING (citizen)
    WHERE f.citizen = :c AND f.name IN ('vehicle.registration', 'identity.full_name');
UPDATE chain_head SET hash = digest(hash || convert_to(:c::text || ' national_police road_safety_enforcement', 'UTF8'), 'sha256') WHERE id = 1;
INSERT INTO audit (hash, entry) SELECT hash, jsonb_build_object('citizen', :c::int, 'agency', 'national_police',
    'purpose', 'road_safety_enforcement', 'fields', '["vehicle.registration", "identity.full_name"]'::jsonb)
    FROM chain_head WHERE id = 1;
COMMIT;
