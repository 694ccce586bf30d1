-- An acceptance reported by one path (the company's backend, or WeChat's push)
-- that the other path has not reported yet: the other's report of it adds no credit.
ALTER TABLE credit_history ADD COLUMN unpaired BOOLEAN NOT NULL DEFAULT FALSE;

-- WeChat's pushes name users by openid.
CREATE INDEX users_by_openid ON users (app_seq, openid);
