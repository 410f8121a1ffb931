-- Runs once, when the PostgreSQL volume is first created. The services create their own tables;
-- the extension is created here so they do not need superuser rights for it.
CREATE EXTENSION IF NOT EXISTS vector;
