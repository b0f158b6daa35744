-- Schema and data of the plain PostgreSQL baseline (scripts/bench-plain-pg.sql): 1,000
-- citizens, each with a data key wrapped (AES, pgcrypto) under a master key, two encrypted
-- fields and a consent; a hash-chain head and the audit table.
CREATE EXTENSION IF NOT EXISTS pgcrypto;
CREATE TABLE citizen_keys (citizen int PRIMARY KEY, wrapped bytea NOT NULL);
CREATE TABLE fields (citizen int NOT NULL, name text NOT NULL, ct bytea NOT NULL, PRIMARY KEY (citizen, name));
CREATE TABLE consents (citizen int NOT NULL, agency text NOT NULL, purpose text NOT NULL,
    expires timestamptz NOT NULL, PRIMARY KEY (citizen, agency, purpose));
CREATE TABLE chain_head (id int PRIMARY KEY, hash bytea NOT NULL);
CREATE TABLE audit (id bigserial PRIMARY KEY, hash bytea NOT NULL, entry jsonb NOT NULL,
    at timestamptz NOT NULL DEFAULT now());
INSERT INTO chain_head VALUES (1, '\x00');
INSERT INTO citizen_keys SELECT i, encrypt(gen_random_bytes(32),
    '\x000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f'::bytea, 'aes')
    FROM generate_series(1, 1000) i;
INSERT INTO fields SELECT k.citizen, n.name, encrypt(convert_to('value of ' || n.name, 'UTF8'),
    decrypt(k.wrapped, '\x000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f'::bytea, 'aes'), 'aes')
    FROM citizen_keys k CROSS JOIN (VALUES ('vehicle.registration'), ('identity.full_name')) n(name);
INSERT INTO consents SELECT i, 'national_police', 'road_safety_enforcement', now() + interval '1 year'
    FROM generate_series(1, 1000) i;
