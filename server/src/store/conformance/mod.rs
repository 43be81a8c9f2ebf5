//! The store's conformance suite: every behaviour [`Store`](super::Store)'s methods promise
//! (their docs are the contract), written once against the public `Store` API and run against
//! every engine.
//!
//! Design:
//! - A test is a generic `async fn name<H: Harness>()` in the file of its subject
//!   ([`accounts`], [`rooms`], [`membership`], [`messages`], [`cursors`], [`friends`],
//!   [`blocks`], [`moderation`], [`retention`], [`summaries`], [`setup`], [`epoch`], [`commits`]). It sees
//!   the engine only through [`harness::Harness`]: a fresh, empty place for a store, opened
//!   (and reopened, for durability across a restart) with a commit hook. No test touches an
//!   engine's internals (tables, files, writer queues); those are each engine's own tests
//!   (`redb/tests.rs` and its siblings).
//! - [`harness::Fixture`] opens the store with a hook that records every call
//!   ([`harness::Hooked`]), so what the hook is told — which messages and tombstones, in what
//!   order, once — is tested like any other result.
//! - `suite!` lists every test once and makes one `#[tokio::test]` per test and engine, so
//!   each shows up by name per engine (`store::conformance::redb::history_pages_forwards_and_backwards`).
//!   A new engine is one harness type and one `suite!` line; a test not in the list is dead
//!   code, which the lints refuse.
//! - Each test runs on a two-thread runtime (some race writers against each other) under a
//!   time limit, so a hung engine fails the test instead of the run.

mod accounts;
mod blocks;
mod commits;
mod cursors;
mod epoch;
mod friends;
mod harness;
mod membership;
mod messages;
mod moderation;
mod retention;
mod rooms;
mod setup;
mod summaries;

use std::future::Future;
use std::time::Duration;

use harness::{PostgresHarness, RedbHarness};

/// The longest one test may take before it counts as hung.
const TEST_LIMIT: Duration = Duration::from_secs(30);

/// Runs one test body, failing it if it does not finish within [`TEST_LIMIT`].
async fn bounded(test: impl Future<Output = ()>) {
    if tokio::time::timeout(TEST_LIMIT, test).await.is_err() {
        panic!("the test did not finish within {TEST_LIMIT:?}");
    }
}

/// `suite!(module, Harness)`: the module `module` with every test of the suite run against
/// `Harness`, one `#[tokio::test]` per line of the list.
macro_rules! suite {
    ($engine:ident, $harness:ty) => {
        suite! {
            @tests $engine, $harness;
            accounts::users_are_unique_case_insensitively_and_all_start_as_users,
            accounts::sessions_expire_and_can_be_deleted,
            accounts::sessions_are_listed_expired_ones_too_until_revoked,
            accounts::a_users_sessions_are_capped_and_expired_ones_dropped,
            accounts::the_connections_token_check_answers_as_session_user,
            accounts::a_password_change_replaces_every_session_with_one_new_one,
            accounts::accounts_sessions_and_revocations_survive_a_reopen,
            accounts::last_seen_only_moves_forwards,
            rooms::rooms_have_unique_names_and_list_in_creation_order,
            rooms::look_alike_room_names_are_one_name,
            rooms::the_room_list_pages_with_heads_in_one_read,
            rooms::dms_are_not_in_the_room_list,
            membership::room_membership_is_durable_and_creating_a_room_joins_it,
            membership::dms_cannot_be_joined_or_left,
            membership::memberships_are_capped_and_a_refusal_writes_nothing,
            messages::append_assigns_seqs_per_conversation,
            messages::heads_are_read_together_in_the_order_asked,
            messages::a_resent_client_id_returns_the_original,
            messages::client_ids_are_de_duplicated_per_conversation,
            messages::a_client_id_queued_twice_is_stored_once,
            messages::queued_appends_take_seqs_in_queue_order,
            messages::history_pages_forwards_and_backwards,
            messages::resuming_from_a_cursor_gets_every_later_message_once,
            messages::deleting_leaves_a_tombstone_indexes_it_and_tells_the_hook_once,
            messages::tombstones_read_the_same_both_ways_and_after_a_reopen,
            messages::a_resend_of_a_deleted_message_stays_deleted,
            cursors::cursors_only_move_forwards_are_clamped_to_the_head_and_survive_reopening,
            cursors::a_request_queued_after_appends_sees_their_heads_and_cursors,
            cursors::member_cursors_name_each_member_in_id_order_up_to_the_limit,
            cursors::an_advance_queued_before_an_own_message_leaves_it_read,
            friends::friend_requests_accept_into_one_dm_per_pair_and_removal_keeps_it,
            friends::crossing_requests_make_one_dm_and_each_pair_its_own,
            friends::friend_entries_are_capped_on_both_sides,
            blocks::blocks_are_listed_capped_and_survive_a_reopen,
            blocks::a_block_ends_a_friendship_and_refuses_requests_both_ways,
            moderation::roles_change_only_through_admins_and_are_audited_once,
            moderation::a_ban_revokes_every_session_refuses_new_ones_and_ends,
            moderation::a_ban_is_replaced_refuses_logins_and_survives_a_reopen,
            moderation::ip_bans_are_canonical_expire_and_are_audited,
            moderation::ip_bans_are_replaced_per_network_and_survive_a_reopen,
            moderation::the_audit_log_pages_newest_first_and_survives_reopening,
            moderation::the_audit_log_keeps_who_why_and_the_actors_name_then,
            moderation::a_moderators_deletion_is_audited_once_and_an_authors_is_not,
            retention::retention_is_stored_per_room_listed_audited_and_durable,
            retention::retention_by_count_tombstones_the_oldest_in_batches,
            retention::retention_by_age_stops_at_the_first_young_message,
            retention::racing_retention_steps_tombstone_each_message_once,
            retention::retained_and_deleted_messages_are_not_unread,
            summaries::summaries_count_unread_from_the_read_cursor_without_own_messages,
            summaries::a_dm_summary_names_the_peer_and_shows_their_cursors,
            summaries::blocked_authors_are_not_unread_and_their_last_message_is_hidden,
            setup::join_view_reads_membership_head_and_a_batch_only_when_allowed,
            setup::welcome_view_matches_the_single_reads,
            epoch::reopening_keeps_everything,
            epoch::the_epoch_is_stable_across_reopens_and_new_per_store,
            epoch::timestamps_never_go_backwards_across_a_reopen,
            commits::concurrent_appends_get_every_seq_once_and_the_hook_hears_first,
            commits::the_hook_is_told_each_commit_once_in_order_and_never_empty,
            commits::writes_without_messages_do_not_call_the_hook,
            commits::refused_requests_do_not_fail_the_requests_around_them,
            commits::commit_counts_count_requests_and_appended_messages,
            commits::a_panicking_hook_does_not_stop_the_store,
            commits::close_finishes_writes_then_refuses_them,
        }
    };
    (@tests $engine:ident, $harness:ty; $($subject:ident :: $test:ident),* $(,)?) => {
        mod $engine {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    bounded($subject::$test::<$harness>()).await;
                }
            )*
        }
    };
}

suite!(redb, RedbHarness);
suite!(postgres, PostgresHarness);
// Filling the IP-ban table through the API is 10,000 durable transactions; PostgreSQL commits
// them one after another (the cap is checked under a lock), ~30 s with fsync on this machine.
// There the cap is proven on a table filled in one statement
// (`postgres::moderation_tests::the_ip_ban_cap_counts_expired_rows_only_until_it_is_reached`).
suite!(@tests redb_only, RedbHarness; moderation::ip_bans_are_capped_and_expired_ones_make_room);
