-- Opened GitHub issues from GH Archive, one row per issue, in the columns that
-- `issue-summarizer ingest` reads from a CSV export.
--
-- Source: the public `githubarchive` dataset (one table per month, githubarchive.month.YYYYMM;
-- use githubarchive.day.* with YYYYMMDD suffixes for a narrower range). Event payloads from
-- 2015 on carry the full REST issue object that the columns below are taken from.
--
-- Parameters (BigQuery named query parameters, both STRING, inclusive):
--   @first_table  first table suffix, e.g. '202401'   (month.* -> YYYYMM, day.* -> YYYYMMDD)
--   @last_table   last table suffix,  e.g. '202403'
--
-- What it keeps: IssuesEvent rows whose action is 'opened'; pull requests are left out
-- (a `pull_request` object with a url, or a /pull/ html url; the all-null `pull_request` of old
-- API objects is a plain issue). Text keeps its original casing; cleaning happens later.
--
-- Output columns: issue_url (html url), issue_title, body, repo (owner/name), labels (a JSON
-- array string of label names, e.g. ["bug","good first issue"]), created_at (ISO 8601, UTC),
-- id (GitHub's numeric issue id), author (login of the issue's author).
--
-- Run it (check the bytes scanned first with --dry_run: the payload column is large):
--
--   bq query --use_legacy_sql=false \
--     --parameter=first_table::202401 --parameter=last_table::202403 \
--     --destination_table=MY_PROJECT:issues.opened_2024q1 --replace \
--     "$(cat summarizer/sql/gharchive_opened_issues.sql)"
--
-- Export it as CSV with a header (several files when large) to Cloud Storage:
--
--   bq extract --destination_format=CSV --print_header=true \
--     MY_PROJECT:issues.opened_2024q1 'gs://BUCKET/export-*.csv'
--
-- and read the export directly (ingest reads the header, the JSON labels and the ids):
--
--   issue-summarizer ingest gs://BUCKET/export-*.csv -o gs://BUCKET/records.jsonl

SELECT
  JSON_EXTRACT_SCALAR(payload, '$.issue.html_url') AS issue_url,
  JSON_EXTRACT_SCALAR(payload, '$.issue.title') AS issue_title,
  JSON_EXTRACT_SCALAR(payload, '$.issue.body') AS body,
  repo.name AS repo,
  TO_JSON_STRING(ARRAY(
    SELECT JSON_EXTRACT_SCALAR(label, '$.name')
    FROM UNNEST(JSON_EXTRACT_ARRAY(payload, '$.issue.labels')) AS label WITH OFFSET AS position
    WHERE JSON_EXTRACT_SCALAR(label, '$.name') IS NOT NULL
    ORDER BY position
  )) AS labels,
  JSON_EXTRACT_SCALAR(payload, '$.issue.created_at') AS created_at,
  CAST(JSON_EXTRACT_SCALAR(payload, '$.issue.id') AS INT64) AS id,
  JSON_EXTRACT_SCALAR(payload, '$.issue.user.login') AS author
FROM `githubarchive.month.*`
WHERE _TABLE_SUFFIX BETWEEN @first_table AND @last_table
  AND type = 'IssuesEvent'
  AND JSON_EXTRACT_SCALAR(payload, '$.action') = 'opened'
  AND JSON_EXTRACT_SCALAR(payload, '$.issue.title') IS NOT NULL
  -- Pull requests: a pull_request object whose urls are set, or a /pull/ html url.
  AND COALESCE(
        JSON_EXTRACT_SCALAR(payload, '$.issue.pull_request.url'),
        JSON_EXTRACT_SCALAR(payload, '$.issue.pull_request.html_url'),
        JSON_EXTRACT_SCALAR(payload, '$.issue.pull_request.diff_url')) IS NULL
  AND STRPOS(IFNULL(JSON_EXTRACT_SCALAR(payload, '$.issue.html_url'), ''), '/pull/') = 0
