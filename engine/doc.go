// Package engine is what an application embeds for sticky routing: a Client
// answers "which pod serves this user?" from a lock-free local cache kept
// coherent by Redis, and places new users on the least loaded accepting pod;
// a Server is one pod's side, publishing its load and routing state and
// claiming the users it holds.
package engine
