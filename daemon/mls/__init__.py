"""The RESO Web API connector: auth, queries, paging, rate limits and retries."""
