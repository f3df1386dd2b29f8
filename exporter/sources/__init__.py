"""Where jobs come from: HTTP sources scraped on a schedule."""
