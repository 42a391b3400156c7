-- Schema 9: agent image backups. An image job names the image it writes (the dataset images/<image>)
-- and records how consistent the agent's view of the device was.

ALTER TABLE agent_jobs ADD COLUMN image TEXT;              -- NULL for file jobs
ALTER TABLE agent_jobs ADD COLUMN consistency TEXT;        -- image jobs: 'snapshot', 'unmounted', 'crash'
