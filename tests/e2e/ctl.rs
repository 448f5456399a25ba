//! `hookmesh ctl` driven the way an operator would.
