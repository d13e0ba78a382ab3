//! The store conformance suite: the same tests, unchanged, against SQLite and DynamoDB.
//! DynamoDB runs against the server at `DYNAMODB_ENDPOINT` (moto_server in CI) and is skipped,
//! with the reason printed, when that variable is unset.

mod suite;

use store::{SqliteStore, testing::dynamodb_test_store};

macro_rules! conformance {
    ($($test:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $test() {
                    let store = super::SqliteStore::open_in_memory().expect("open sqlite");
                    super::suite::$test(&store).await;
                }
            )*
        }
        mod dynamodb {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $test() {
                    if let Some(store) = super::dynamodb_test_store(stringify!($test)).await {
                        super::suite::$test(&store).await;
                    }
                }
            )*
        }
    };
}

conformance!(
    crm_deliveries_are_kept_per_call_and_connection,
    one_worker_at_a_time_holds_a_crm_delivery,
    report_counters_equal_a_recount_after_reordered_and_repeated_events,
    daily_reports_and_recipients_are_kept_per_organisation,
    a_contact_upload_begins_once_and_keeps_its_outcome,
    crm_connections_belong_to_their_organisation,
    transcripts_are_kept_in_chunks_of_new_lines,
    api_keys_are_named_listed_expire_and_record_their_last_use,
    caller_ids_belong_to_one_organisation,
    organisations_and_api_keys,
    records_of_another_organisation_are_not_found,
    phone_numbers_are_unique_per_campaign,
    lists_page_with_opaque_stable_cursors,
    status_changes_are_conditional_and_race_safe,
    claims_take_due_contacts_in_priority_order_under_the_cap,
    events_apply_once_and_never_move_a_call_backwards,
    retries_follow_the_policy_until_max_attempts,
    late_data_revises_the_contact_until_it_is_dialed_again,
    concurrency_attack_never_exceeds_the_cap_nor_dials_twice,
    reordering_attack_gives_identical_rows,
    assistants_are_listed_filtered_and_scoped,
    assistant_changes_are_versioned_and_optimistic,
    imports_of_one_provider_id_never_duplicate,
    provider_ids_belong_to_one_organisation,
    every_organisation_installs_its_own_templates,
    campaigns_are_found_by_the_assistant_they_use,
    do_not_call_numbers_are_left_out_of_imports_and_finalise_ready_contacts,
    cancel_finalises_ready_contacts_and_calls_in_flight_retry_nothing,
    cancel_racing_claims_leaves_every_contact_finished,
    contact_counters_equal_a_recount_through_every_change,
    claims_leave_contacts_outside_their_calling_window_untouched,
    batch_mode_moves_on_only_when_a_batch_is_finished,
    listed_numbers_are_finalised_instead_of_claimed,
    dialing_records_provider_ids_pace_and_caller_ids,
    orphaned_events_wait_for_their_call_and_post_call_is_marked_once,
);

/// DynamoDB alone (SQLite has no item limit): a contact over the 400 KB item limit is refused as
/// what it is, naming the item, and never retried as a lost race.
#[tokio::test]
async fn dynamodb_refuses_an_item_over_400_kb_naming_it() {
    use store::{CampaignStore, OrgStore, StoreError};
    let Some(store) = dynamodb_test_store("oversized_item").await else { return };
    let org = store.create_org("Acme").await.unwrap().id;
    let new = domain::NewCampaign::parse("big", domain::Cap::DEFAULT, domain::CampaignSettings::default()).unwrap();
    let campaign = store.create_campaign(org, new).await.unwrap();
    let mut contact = domain::NewContact::new(
        domain::E164::parse("+14155550100", None).unwrap(),
        chrono_tz::UTC,
        domain::Consent::on_file(chrono::Utc::now()),
    );
    contact.variables.insert("notes".into(), "x".repeat(450 * 1024));
    let refused = store.add_contacts(org, campaign.id, vec![contact], chrono::Utc::now()).await.unwrap_err();
    assert!(matches!(&refused, StoreError::Rejected { item, .. } if item.contains("CONTACT")), "{refused:?}");
}
