//! TODO(owner): see issue.
