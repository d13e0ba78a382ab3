//! The DynamoDB store: the single-table design of ARCHITECTURE.md. Every multi-item change is one
//! `TransactWriteItems` whose conditions (item versions, the cap limit, guard items) make it
//! safe under any concurrency; a cancelled transaction is re-read and retried.

use crate::{
    AddedContacts, ApiKey, Applied, AssistantFilter, AssistantStore, CallFilter, CallStore, CallerIdStore, CampaignStore, Claim,
    ContactFilter, ContactMoves, ContactTally, CreatedApiKey, Cursor, DialingStore, DoNotCallAdded, DoNotCallEntry, DoNotCallStore,
    KeyHash, ORPHAN_MEMORY, OrgStore, Page, PageRequest, PlacedCall, Result, StoreError, StoredCallEvent, millis, normalised, now,
    settle_contact, statuses,
};
use aws_sdk_dynamodb::{
    Client,
    error::{DisplayErrorContext, SdkError},
    operation::transact_write_items::TransactWriteItemsError,
    types::{
        AttributeDefinition, AttributeValue, BillingMode, ConditionCheck, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
        ProjectionType, Put, ScalarAttributeType, TransactWriteItem, Update,
    },
};
use chrono::{DateTime, Utc};
use domain::report::{CallFacts, ReportCounts, report_delta};
use domain::{
    Assistant, AssistantId, AssistantPatch, AssistantVersion, Call, CallDisposition, CallEvent, CallEventKind, CallId, CallProvider,
    CallState, CallerId, CallingArea, Campaign, CampaignCounters, CampaignId, CampaignSettings, CampaignStatus, Cap, Contact,
    ContactDisposition, ContactFate, ContactId, ContactState, DialCheck, DialSlot, E164, EmergencyStop, NewAssistant, NewCampaign,
    NewContact, OrgId, Organisation, Pace, ProviderKind, StartRefusal,
};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

mod assistants;
mod caller_ids;
mod calls;
mod campaigns;
mod crm;
mod dialing;
mod do_not_call;
mod orgs;
mod reports;
mod uploads;

type Item = HashMap<String, AttributeValue>;

/// The most items DynamoDB takes in one transaction.
const MAX_TRANSACTION_ITEMS: usize = 100;
/// Optimistic retries before giving up on a hot item.
const MAX_RETRIES: u32 = 60;

const READY_INDEX: &str = "ready";
const CAMPAIGN_CALLS_INDEX: &str = "campaign-calls";
const ACTIVE_CALLS_INDEX: &str = "active-calls";

/// The DynamoDB store. Cheap to clone.
#[derive(Clone, Debug)]
pub struct DynamoStore {
    client: Client,
    table: String,
}

impl DynamoStore {
    /// A store over `table`, at `endpoint` when given (moto_server, DynamoDB Local), else AWS.
    pub async fn connect(table: &str, endpoint: Option<&str>) -> Self {
        let region = aws_config::meta::region::RegionProviderChain::default_provider().or_else("us-east-1");
        // throttling and 500s are transient: retry them more than the SDK's default of 3
        let retry = aws_config::retry::RetryConfig::standard().with_max_attempts(8);
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest()).region(region).retry_config(retry);
        if let Some(endpoint) = endpoint {
            loader = loader.endpoint_url(endpoint);
        }
        Self::new(Client::new(&loader.load().await), table)
    }

    pub fn new(client: Client, table: &str) -> Self {
        Self { client, table: table.to_string() }
    }

    /// Every item matching `filter`, its `pk` and `sk` only, read by a paginated scan (migrations).
    async fn scan_keys(&self, filter: &str, values: Vec<(&str, AttributeValue)>, names: &[(&str, &str)]) -> Result<Vec<(String, String)>> {
        let mut keys = Vec::new();
        let mut start: Option<HashMap<String, AttributeValue>> = None;
        loop {
            let mut scan = self.client.scan().table_name(&self.table).filter_expression(filter).projection_expression("pk, sk");
            for (k, v) in &values {
                scan = scan.expression_attribute_values(*k, v.clone());
            }
            for (k, v) in names {
                scan = scan.expression_attribute_names(*k, *v);
            }
            let page = scan.set_exclusive_start_key(start.take()).send().await.map_err(sdk)?;
            for item in page.items() {
                let key = |name: &str| item.get(name).and_then(|v| v.as_s().ok()).cloned();
                if let (Some(pk), Some(sk)) = (key("pk"), key("sk")) {
                    keys.push((pk, sk));
                }
            }
            match page.last_evaluated_key {
                Some(next) if !next.is_empty() => start = Some(next),
                _ => return Ok(keys),
            }
        }
    }

    /// Finalises as `no_consent` every ready contact with no consent on record (imported before
    /// consent was recorded), through the same conditional write as a do-not-call finalise, so the
    /// counters follow; `outdial migrate` runs it. The number finalised; running it again finds none.
    pub async fn finalise_contacts_without_consent(&self, now: DateTime<Utc>) -> Result<u64> {
        let campaigns = self
            .scan_keys(
                "begins_with(pk, :org) AND begins_with(sk, :campaign)",
                vec![(":org", s("ORG#")), (":campaign", s("CAMPAIGN#"))],
                &[],
            )
            .await?;
        let org_of: HashMap<String, OrgId> = campaigns
            .into_iter()
            .filter_map(|(pk, sk)| Some((sk.strip_prefix("CAMPAIGN#")?.to_string(), OrgId::parse(pk.strip_prefix("ORG#")?).ok()?)))
            .collect();
        let filter = "begins_with(sk, :contact) AND #state = :ready AND (attribute_not_exists(consent) OR attribute_type(consent, :null))";
        let values = vec![(":contact", s("CONTACT#")), (":ready", s("ready")), (":null", s("NULL"))];
        let mut finalised = 0;
        for (pk, sk) in self.scan_keys(filter, values, &[("#state", "state")]).await? {
            let (Some(campaign), Some(contact)) = (pk.strip_prefix("CAMPAIGN#"), sk.strip_prefix("CONTACT#")) else { continue };
            let (Some(org), Ok(campaign), Ok(contact)) = (org_of.get(campaign), CampaignId::parse(campaign), ContactId::parse(contact))
            else {
                return Err(StoreError::Corrupt(format!("contact {sk} of {pk} belongs to no organisation's campaign")));
            };
            if self.finalise_ready_contact(*org, campaign, contact, ContactDisposition::NoConsent, now).await? {
                finalised += 1;
            }
        }
        Ok(finalised)
    }

    /// Creates the table and its indexes (for tests and local use; `sam deploy` creates it in AWS).
    /// An existing table is left as it is.
    pub async fn create_table(&self) -> Result<()> {
        let attr = |name: &str| AttributeDefinition::builder().attribute_name(name).attribute_type(ScalarAttributeType::S).build();
        let key = |name: &str, kind| KeySchemaElement::builder().attribute_name(name).key_type(kind).build();
        let index = |name: &str, pk: &str, sk: &str| {
            GlobalSecondaryIndex::builder()
                .index_name(name)
                .key_schema(key(pk, KeyType::Hash).expect("valid key"))
                .key_schema(key(sk, KeyType::Range).expect("valid key"))
                .projection(Projection::builder().projection_type(ProjectionType::All).build())
                .build()
        };
        let mut request = self
            .client
            .create_table()
            .table_name(&self.table)
            .billing_mode(BillingMode::PayPerRequest)
            .key_schema(key("pk", KeyType::Hash).map_err(build)?)
            .key_schema(key("sk", KeyType::Range).map_err(build)?);
        for name in ["pk", "sk", "gsi1pk", "gsi1sk", "gsi2pk", "gsi2sk", "gsi3pk", "gsi3sk"] {
            request = request.attribute_definitions(attr(name).map_err(build)?);
        }
        for (name, pk, sk) in
            [(READY_INDEX, "gsi1pk", "gsi1sk"), (CAMPAIGN_CALLS_INDEX, "gsi2pk", "gsi2sk"), (ACTIVE_CALLS_INDEX, "gsi3pk", "gsi3sk")]
        {
            request = request.global_secondary_indexes(index(name, pk, sk).map_err(build)?);
        }
        match request.send().await {
            Ok(_) => Ok(()),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_resource_in_use_exception()) => Ok(()),
            Err(e) => Err(sdk(e)),
        }
    }

    async fn get(&self, pk: String, sk: &str) -> Result<Option<Item>> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(pk))
            .key("sk", s(sk))
            .consistent_read(true)
            .send()
            .await
            .map_err(sdk)?;
        Ok(out.item)
    }

    async fn campaign_item(&self, org: OrgId, id: CampaignId) -> Result<CampaignItem> {
        let item = self.get(org_pk(org), &campaign_sk(id)).await?.ok_or_else(|| StoreError::not_found("campaign", id))?;
        decode(item)
    }

    async fn call_item(&self, org: OrgId, id: CallId) -> Result<CallItem> {
        let item: CallItem = decode(self.get(call_pk(id), "CALL").await?.ok_or_else(|| StoreError::not_found("call", id))?)?;
        if item.call.org_id != org {
            return Err(StoreError::not_found("call", id));
        }
        Ok(item)
    }

    async fn org_exists(&self, org: OrgId) -> Result<()> {
        self.get(org_pk(org), "ORG").await?.map(|_| ()).ok_or_else(|| StoreError::not_found("organisation", org))
    }

    /// Runs a transaction; Ok(false) when a condition failed or it collided with another one (a
    /// lost race: the caller re-reads and retries). A throttled transaction is sent again after a
    /// backoff; one the table refuses as invalid (an item over 400 KB) is an error naming the item.
    async fn transact(&self, items: Vec<TransactWriteItem>) -> Result<bool> {
        debug_assert!(items.len() <= MAX_TRANSACTION_ITEMS);
        let mut backoff = std::time::Duration::from_millis(50);
        for _ in 0..THROTTLED_TRANSACTION_RETRIES {
            let sent = self.client.transact_write_items().set_transact_items(Some(items.clone())).send().await;
            let Err(e) = sent else { return Ok(true) };
            let reasons = match &e {
                SdkError::ServiceError(service) => match service.err() {
                    TransactWriteItemsError::TransactionCanceledException(canceled) => canceled.cancellation_reasons().to_vec(),
                    // the request as a whole is invalid, e.g. an item over 400 KB: the largest item is the suspect
                    refused if refused.meta().code() == Some("ValidationException") => {
                        let largest = items.iter().max_by_key(|step| step.put().map_or(0, |p| item_size(p.item())));
                        let reason = refused.meta().message().unwrap_or("refused as invalid").to_string();
                        return Err(StoreError::Rejected { item: largest.map_or_else(|| "a transaction".into(), item_key), reason });
                    }
                    _ => return Err(sdk(e)),
                },
                _ => return Err(sdk(e)),
            };
            match Cancellation::of(&reasons) {
                Cancellation::LostRace => return Ok(false),
                Cancellation::Throttled => {
                    tokio::time::sleep(backoff).await;
                    backoff *= 2;
                }
                Cancellation::Refused { index, reason } => {
                    let item = items.get(index).map_or_else(|| format!("item {index} of a transaction"), item_key);
                    return Err(StoreError::Rejected { item, reason });
                }
            }
        }
        Err(StoreError::backend("DynamoDB kept throttling the transaction; retry later"))
    }

    fn put(&self, item: Item, condition: &str, values: &[(&str, AttributeValue)]) -> Result<TransactWriteItem> {
        let mut put = Put::builder().table_name(&self.table).set_item(Some(item)).condition_expression(condition);
        if condition.contains("#state") {
            put = put.expression_attribute_names("#state", "state");
        }
        for (k, v) in values {
            put = put.expression_attribute_values(*k, v.clone());
        }
        Ok(TransactWriteItem::builder().put(put.build().map_err(build)?).build())
    }

    fn update(
        &self,
        pk: String,
        sk: String,
        expression: &str,
        condition: Option<&str>,
        values: &[(&str, AttributeValue)],
    ) -> Result<TransactWriteItem> {
        let update = self.update_builder(pk, sk, expression, condition, values);
        Ok(TransactWriteItem::builder().update(update.build().map_err(build)?).build())
    }

    fn update_builder(
        &self,
        pk: String,
        sk: String,
        expression: &str,
        condition: Option<&str>,
        values: &[(&str, AttributeValue)],
    ) -> aws_sdk_dynamodb::types::builders::UpdateBuilder {
        let mut update = Update::builder()
            .table_name(&self.table)
            .key("pk", s(pk))
            .key("sk", s(sk))
            .update_expression(expression)
            .set_condition_expression(condition.map(str::to_string));
        if expression.contains("#status") || condition.is_some_and(|c| c.contains("#status")) {
            update = update.expression_attribute_names("#status", "status");
        }
        for (k, v) in values {
            update = update.expression_attribute_values(*k, v.clone());
        }
        update
    }

    /// An update of the campaign's item: `expression` (whose `ADD` clause, if any, comes last)
    /// under `condition`, plus `ADD`s moving its contact counters (`contacts:<name>`) by `moves`.
    fn campaign_update(
        &self,
        org: OrgId,
        campaign: CampaignId,
        expression: &str,
        condition: Option<&str>,
        values: &[(&str, AttributeValue)],
        moves: &ContactMoves,
    ) -> Result<TransactWriteItem> {
        let adds: Vec<String> = (0..moves.iter().count()).map(|i| format!("#m{i} :m{i}")).collect();
        // DynamoDB takes one ADD clause per expression
        let joiner = if expression.contains("ADD ") { ", " } else { " ADD " };
        let expression = if adds.is_empty() { expression.to_string() } else { format!("{expression}{joiner}{}", adds.join(", ")) };
        let mut update = self.update_builder(org_pk(org), campaign_sk(campaign), &expression, condition, values);
        for (i, (name, by)) in moves.iter().enumerate() {
            update = update
                .expression_attribute_names(format!("#m{i}"), format!("{CONTACT_COUNTER_PREFIX}{name}"))
                .expression_attribute_values(format!(":m{i}"), n(by));
        }
        Ok(TransactWriteItem::builder().update(update.build().map_err(build)?).build())
    }

    /// A transaction item moving the campaign's report counters (`n:<name>` on its `REPORT` item)
    /// by `delta`; None when it moves nothing.
    /// The writes that move the counters of the call's campaign and of the hours it ended in as
    /// its facts go from `before` to what they are now.
    fn report_updates(&self, call: &Call, before: Option<&CallFacts>) -> Result<Vec<TransactWriteItem>> {
        let after = CallFacts::of(call);
        let mut updates = Vec::new();
        let campaign = report_delta(before, after.as_ref());
        if !campaign.is_empty() {
            updates.push(self.counter_update(campaign_pk(call.campaign_id), REPORT_SK.into(), &campaign, None)?);
        }
        for (hour, delta) in domain::report::report_hour_deltas(before, after.as_ref()) {
            let sk = format!("{HOUR_SK_PREFIX}{}#{}", domain::report::hour_key(hour), call.campaign_id);
            updates.push(self.counter_update(hours_pk(call.org_id), sk, &delta, Some(call.campaign_id))?);
        }
        Ok(updates)
    }

    /// `ADD`s each counter of `delta` to item (`pk`, `sk`) as attribute `n:<name>`, naming the
    /// campaign on the item when given.
    fn counter_update(&self, pk: String, sk: String, delta: &ReportCounts, campaign: Option<CampaignId>) -> Result<TransactWriteItem> {
        let mut update = Update::builder().table_name(&self.table).key("pk", s(pk)).key("sk", s(sk));
        let mut adds = Vec::new();
        for (i, (name, by)) in delta.iter().enumerate() {
            adds.push(format!("#c{i} :c{i}"));
            update = update
                .expression_attribute_names(format!("#c{i}"), format!("n:{name}"))
                .expression_attribute_values(format!(":c{i}"), n(by));
        }
        let mut expression = format!("ADD {}", adds.join(", "));
        if let Some(campaign) = campaign {
            expression.push_str(" SET campaign = :campaign");
            update = update.expression_attribute_values(":campaign", s(campaign.to_string()));
        }
        Ok(TransactWriteItem::builder().update(update.update_expression(expression).build().map_err(build)?).build())
    }

    /// A transaction item that changes nothing but fails the transaction unless `condition` holds
    /// on item (`pk`, `sk`).
    fn check(&self, pk: String, sk: String, condition: &str) -> Result<TransactWriteItem> {
        let check =
            ConditionCheck::builder().table_name(&self.table).key("pk", s(pk)).key("sk", s(sk)).condition_expression(condition).build();
        Ok(TransactWriteItem::builder().condition_check(check.map_err(build)?).build())
    }

    /// The items of `keys` (pk, sk), read consistently in one request; those that exist.
    async fn get_many(&self, keys: &[(String, String)]) -> Result<Vec<Item>> {
        let keys: Vec<Item> =
            keys.iter().map(|(pk, sk)| HashMap::from([("pk".to_string(), s(pk.clone())), ("sk".to_string(), s(sk.clone()))])).collect();
        let mut request =
            Some(aws_sdk_dynamodb::types::KeysAndAttributes::builder().set_keys(Some(keys)).consistent_read(true).build().map_err(build)?);
        let (mut items, mut attempt) = (Vec::new(), 0);
        while let Some(keys) = request.take() {
            let out = self.client.batch_get_item().request_items(&self.table, keys).send().await.map_err(sdk)?;
            items.extend(out.responses.unwrap_or_default().remove(&self.table).unwrap_or_default());
            request = out.unprocessed_keys.and_then(|mut u| u.remove(&self.table)).filter(|k| !k.keys.is_empty());
            if request.is_some() {
                attempt += 1;
                backoff(attempt).await;
            }
        }
        Ok(items)
    }

    /// Every item of partition `pk` whose sort key begins with `prefix`, reading only the
    /// `projection` attributes when given.
    async fn query_all(&self, pk: String, prefix: &str, projection: Option<&str>) -> Result<Vec<Item>> {
        let mut items = Vec::new();
        let mut start = None;
        loop {
            let mut query = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
                .expression_attribute_values(":pk", s(pk.clone()))
                .expression_attribute_values(":prefix", s(prefix))
                .set_projection_expression(projection.map(str::to_string))
                .set_exclusive_start_key(start.take());
            if projection.is_some_and(|p| p.contains("#state")) {
                query = query.expression_attribute_names("#state", "state");
            }
            let out = query.send().await.map_err(sdk)?;
            items.extend(out.items.unwrap_or_default());
            match out.last_evaluated_key {
                Some(last) => start = Some(last),
                None => return Ok(items),
            }
        }
    }

    /// Every campaign of the organisation.
    async fn all_campaigns(&self, org: OrgId) -> Result<Vec<Campaign>> {
        let items = self.query_all(org_pk(org), "CAMPAIGN#", None).await?;
        items.into_iter().map(|i| decode::<CampaignItem>(i).map(Campaign::from)).collect()
    }

    /// The numbers among `phones` that are on the organisation's do-not-call list.
    async fn listed_among(&self, org: OrgId, phones: &[&E164]) -> Result<HashSet<String>> {
        let mut listed = HashSet::new();
        for chunk in phones.chunks(100) {
            let unique: BTreeSet<&str> = chunk.iter().map(|p| p.as_str()).collect();
            let keys: Vec<(String, String)> = unique.into_iter().map(|p| (dnc_pk(org), p.to_string())).collect();
            for item in self.get_many(&keys).await? {
                if let Some(AttributeValue::S(phone)) = item.get("sk") {
                    listed.insert(phone.clone());
                }
            }
        }
        Ok(listed)
    }

    /// The campaign's item and whether its organisation's emergency stop holds, in one consistent read.
    async fn campaign_and_stop(&self, org: OrgId, campaign: CampaignId) -> Result<(Item, bool)> {
        let (mut campaign_item, mut stopped) = (None, false);
        for item in self.get_many(&[(org_pk(org), "ORG".into()), (org_pk(org), campaign_sk(campaign))]).await? {
            if item.get("sk").and_then(|v| v.as_s().ok()).is_some_and(|sk| sk == "ORG") {
                stopped = item.contains_key(ORG_STOP);
            } else {
                campaign_item = Some(item);
            }
        }
        Ok((campaign_item.ok_or_else(|| StoreError::not_found("campaign", campaign))?, stopped))
    }

    /// The calling areas of a campaign's contacts, kept on its item.
    fn areas_of(item: &Item) -> Result<Vec<CallingArea>> {
        match item.get(CAMPAIGN_AREAS) {
            Some(AttributeValue::Ss(keys)) => {
                keys.iter().map(|k| CallingArea::parse_key(k).map_err(|e| StoreError::Corrupt(e.to_string()))).collect()
            }
            _ => Ok(Vec::new()),
        }
    }

    /// Up to `limit` ready contacts of the campaign from `range`, in key order.
    async fn ready_contacts(&self, campaign: CampaignId, range: ReadyRange, limit: i32) -> Result<Vec<Item>> {
        let mut query = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(READY_INDEX)
            .expression_attribute_values(":pk", s(ready_pk(campaign)))
            .limit(limit);
        query = match range {
            ReadyRange::All => query.key_condition_expression("gsi1pk = :pk"),
            ReadyRange::FromBatch(batch) => query
                .key_condition_expression("gsi1pk = :pk AND gsi1sk >= :lo")
                .expression_attribute_values(":lo", s(format!("{batch:010}#"))),
            ReadyRange::Due { batch, area, now } => query
                .key_condition_expression("gsi1pk = :pk AND gsi1sk BETWEEN :lo AND :hi")
                .expression_attribute_values(":lo", s(format!("{batch:010}#{}#", area.key())))
                .expression_attribute_values(":hi", s(format!("{batch:010}#{}#{:015}$", area.key(), now.timestamp_millis().max(0)))),
        };
        Ok(query.send().await.map_err(sdk)?.items.unwrap_or_default())
    }

    /// Finalises one ready contact with `disposition`, counting it done; false when it is not ready.
    async fn finalise_ready_contact(
        &self,
        org: OrgId,
        campaign: CampaignId,
        contact: ContactId,
        disposition: ContactDisposition,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let mut attempt = 0;
        loop {
            let Some(raw) = self.get(campaign_pk(campaign), &format!("CONTACT#{contact}")).await? else { return Ok(false) };
            let ContactItem { version, mut contact, .. } = decode(raw)?;
            if contact.state != ContactState::Ready {
                return Ok(false);
            }
            let mut moves = ContactMoves::default();
            let before = contact.standing();
            contact.settle(ContactFate::Done(disposition), now);
            moves.record(Some(before), contact.standing());
            let items = vec![
                self.put(encode(&ContactItem::new(contact, version + 1)), "version = :v", &[(":v", n(version))])?,
                self.campaign_update(org, campaign, "SET contacts_done = contacts_done + :one", None, &[(":one", n(1))], &moves)?,
            ];
            if self.transact(items).await? {
                return Ok(true);
            }
            attempt += 1;
            if attempt > MAX_RETRIES {
                return Err(StoreError::backend(format!("a contact of campaign {campaign} kept changing; retry")));
            }
            backoff(attempt).await;
        }
    }

    /// Moves a campaign that may advance on to its next batch with ready contacts when the
    /// current one has none ready; true when it moved (or another claimer moved it).
    async fn advance_batch(&self, campaign: &Campaign) -> Result<bool> {
        let first = self.ready_contacts(campaign.id, ReadyRange::FromBatch(campaign.current_batch), 1).await?;
        let first_batch = first.into_iter().next().map(decode::<ContactItem>).transpose()?.map(|c| c.contact.batch);
        let Some(next) = first_batch.filter(|b| *b != campaign.current_batch) else { return Ok(false) };
        let moved = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(org_pk(campaign.org_id)))
            .key("sk", s(campaign_sk(campaign.id)))
            .update_expression("SET current_batch = :next")
            .condition_expression("(attribute_not_exists(current_batch) OR current_batch = :current) AND active_calls = :zero")
            .expression_attribute_values(":next", n(next))
            .expression_attribute_values(":current", n(campaign.current_batch))
            .expression_attribute_values(":zero", n(0))
            .send()
            .await;
        match moved {
            Ok(_) => Ok(true),
            Err(e) if e.as_service_error().is_some_and(|e| e.is_conditional_check_failed_exception()) => Ok(true),
            Err(e) => Err(sdk(e)),
        }
    }

    /// Reads one page: `limit + 1` matching items, the extra one only telling whether more exist.
    async fn page<T: DeserializeOwned>(
        &self,
        index: Option<&str>,
        key_condition: &str,
        filter: Option<&str>,
        values: Vec<(&str, AttributeValue)>,
        page: &PageRequest,
        position_keys: &[&str],
    ) -> Result<(Vec<T>, Option<Cursor>)> {
        let mut start: Option<Item> = match &page.cursor {
            Some(c) => Some(c.decode::<BTreeMap<String, String>>()?.into_iter().map(|(k, v)| (k, AttributeValue::S(v))).collect()),
            None => None,
        };
        if let Some(start) = &start
            && !cursor_fits(start, key_condition, &values, position_keys)
        {
            return Err(StoreError::InvalidCursor);
        }
        let want = page.limit as usize + 1;
        let mut raw: Vec<Item> = Vec::new();
        loop {
            let mut query = self
                .client
                .query()
                .table_name(&self.table)
                .set_index_name(index.map(str::to_string))
                .key_condition_expression(key_condition)
                .set_filter_expression(filter.map(str::to_string))
                .set_exclusive_start_key(start.take())
                .limit((want - raw.len()) as i32);
            if filter.is_some_and(|f| f.contains("#state")) {
                query = query.expression_attribute_names("#state", "state");
            }
            if filter.is_some_and(|f| f.contains("#source")) {
                query = query.expression_attribute_names("#source", "source");
            }
            for (k, v) in &values {
                query = query.expression_attribute_values(*k, v.clone());
            }
            let resumed = page.cursor.is_some();
            let out = match query.send().await {
                Ok(out) => out,
                // a start key the table cannot resume from is a cursor this list never handed out
                Err(e) if resumed && e.as_service_error().and_then(|s| s.meta().code()) == Some("ValidationException") => {
                    return Err(StoreError::InvalidCursor);
                }
                Err(e) => return Err(sdk(e)),
            };
            raw.extend(out.items.unwrap_or_default());
            match out.last_evaluated_key {
                Some(last) if raw.len() < want => start = Some(last),
                _ => break,
            }
        }
        let next = if raw.len() > page.limit as usize {
            raw.truncate(page.limit as usize);
            raw.last().map(|last| {
                let position: BTreeMap<String, String> = position_keys
                    .iter()
                    .filter_map(|k| last.get(*k).and_then(|v| v.as_s().ok()).map(|v| (k.to_string(), v.clone())))
                    .collect();
                Cursor::encode(&position)
            })
        } else {
            None
        };
        Ok((raw.into_iter().map(decode).collect::<Result<_>>()?, next))
    }
}

/// Whether a decoded cursor is a position in the list `key_condition` reads: exactly its position
/// keys, in the partition the condition names and under the prefix it asks for.
fn cursor_fits(start: &Item, key_condition: &str, values: &[(&str, AttributeValue)], position_keys: &[&str]) -> bool {
    if start.len() != position_keys.len() || !position_keys.iter().all(|k| start.contains_key(*k)) {
        return false;
    }
    let value_of = |placeholder: &str| values.iter().find(|(k, _)| *k == placeholder).and_then(|(_, v)| v.as_s().ok());
    let at = |attribute: &str| start.get(attribute).and_then(|v| v.as_s().ok());
    key_condition.split(" AND ").all(|term| {
        let term = term.trim();
        if let Some(args) = term.strip_prefix("begins_with(").and_then(|t| t.strip_suffix(')')) {
            let (attribute, placeholder) = args.split_once(',').map(|(a, p)| (a.trim(), p.trim())).unwrap_or_default();
            return matches!((at(attribute), value_of(placeholder)), (Some(v), Some(prefix)) if v.starts_with(prefix.as_str()));
        }
        match term.split_whitespace().collect::<Vec<_>>()[..] {
            [attribute, "=", placeholder] => matches!((at(attribute), value_of(placeholder)), (Some(v), Some(want)) if v == want),
            _ => true,
        }
    })
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn av<T: Serialize>(v: &T) -> AttributeValue {
    serde_dynamo::to_attribute_value(v).expect("domain values serialise")
}

/// The filter expression `a = :a AND b = :b` of the filters that are set, their values added to `values`.
fn equalities<const N: usize>(
    values: &mut Vec<(&'static str, AttributeValue)>,
    filters: [(&'static str, &'static str, Option<AttributeValue>); N],
) -> Option<String> {
    let mut conditions = Vec::new();
    for (condition, placeholder, value) in filters {
        if let Some(value) = value {
            values.push((placeholder, value));
            conditions.push(condition);
        }
    }
    (!conditions.is_empty()).then(|| conditions.join(" AND "))
}

fn encode<T: Serialize>(item: &T) -> Item {
    serde_dynamo::to_item(item).expect("domain values serialise")
}

fn decode<T: DeserializeOwned>(item: Item) -> Result<T> {
    serde_dynamo::from_item(item).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// Times a throttled transaction is sent before giving up (the SDK retries each send as well).
const THROTTLED_TRANSACTION_RETRIES: u32 = 6;

/// Why DynamoDB canceled a transaction, from its cancellation reasons (one per item, in order).
#[derive(Debug, PartialEq, Eq)]
enum Cancellation {
    /// A condition failed or another transaction held an item: re-read and retry.
    LostRace,
    /// Throttled: the same transaction may be sent again after a backoff.
    Throttled,
    /// The table refuses an item for good (validation, item collection size).
    Refused { index: usize, reason: String },
}

impl Cancellation {
    fn of(reasons: &[aws_sdk_dynamodb::types::CancellationReason]) -> Self {
        let code = |r: &aws_sdk_dynamodb::types::CancellationReason| r.code().unwrap_or("None").to_string();
        if let Some((index, r)) =
            reasons.iter().enumerate().find(|(_, r)| matches!(code(r).as_str(), "ValidationError" | "ItemCollectionSizeLimitExceeded"))
        {
            return Self::Refused { index, reason: r.message().map_or_else(|| code(r), str::to_string) };
        }
        if reasons.iter().any(|r| matches!(code(r).as_str(), "ThrottlingError" | "ProvisionedThroughputExceeded" | "RequestLimitExceeded"))
        {
            return Self::Throttled;
        }
        Self::LostRace
    }
}

/// An item's size as DynamoDB counts it, near enough to tell the largest of a transaction: the
/// lengths of its attribute names and values.
fn item_size(item: &Item) -> usize {
    fn value_size(v: &AttributeValue) -> usize {
        match v {
            AttributeValue::S(s) | AttributeValue::N(s) => s.len(),
            AttributeValue::B(b) => b.as_ref().len(),
            AttributeValue::Ss(l) | AttributeValue::Ns(l) => l.iter().map(String::len).sum(),
            AttributeValue::L(l) => l.iter().map(value_size).sum(),
            AttributeValue::M(m) => item_size(m),
            _ => 1,
        }
    }
    item.iter().map(|(name, v)| name.len() + value_size(v)).sum()
}

/// The key of the item a transaction step writes or checks, for errors.
fn item_key(step: &TransactWriteItem) -> String {
    let key = step
        .put()
        .map(|p| p.item())
        .or_else(|| step.update().map(|u| u.key()))
        .or_else(|| step.condition_check().map(|c| c.key()))
        .or_else(|| step.delete().map(|d| d.key()));
    let part = |name: &str| key.and_then(|k| k.get(name)).and_then(|v| v.as_s().ok()).cloned().unwrap_or_default();
    format!("item {} / {}", part("pk"), part("sk"))
}

fn sdk<E, R>(e: SdkError<E, R>) -> StoreError
where
    E: std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    StoreError::backend_from(DisplayErrorContext(&e).to_string(), e)
}

fn build(e: aws_sdk_dynamodb::error::BuildError) -> StoreError {
    StoreError::backend_from("a DynamoDB request could not be built", e)
}

fn org_pk(org: OrgId) -> String {
    format!("ORG#{org}")
}
fn campaign_sk(id: CampaignId) -> String {
    format!("CAMPAIGN#{id}")
}
fn campaign_pk(id: CampaignId) -> String {
    format!("CAMPAIGN#{id}")
}
fn dnc_pk(org: OrgId) -> String {
    format!("DNC#{org}")
}
fn call_pk(id: CallId) -> String {
    format!("CALL#{id}")
}
fn ready_pk(campaign: CampaignId) -> String {
    format!("READY#{campaign}")
}
/// Ready contacts group by batch and calling area (zone, US state), then sort by due time,
/// priority (highest first) and id.
fn ready_sk(c: &Contact) -> String {
    let inverted_priority = i64::from(i32::MAX) - i64::from(c.priority);
    format!("{:010}#{}#{:015}#{inverted_priority:010}#{}", c.batch, c.calling_area().key(), c.due_at.timestamp_millis().max(0), c.id)
}

/// Which ready contacts a query reads.
#[derive(Clone, Copy)]
enum ReadyRange {
    All,
    /// Those of batch `.0` and every later one.
    FromBatch(u32),
    /// Those of one batch and calling area due at `now`.
    Due {
        batch: u32,
        area: CallingArea,
        now: DateTime<Utc>,
    },
}

/// The campaign item's set of `zone|state` keys its contacts are in.
const CAMPAIGN_AREAS: &str = "areas";

/// The organisation item's attribute that holds its emergency stop (claims check it is absent).
const ORG_STOP: &str = "emergencyStop";

#[derive(Serialize, Deserialize)]
struct OrgItem {
    pk: String,
    sk: String,
    #[serde(flatten)]
    org: Organisation,
}

/// Counters live at the top level of the item so update expressions can move them.
#[derive(Serialize, Deserialize)]
struct CampaignItem {
    pk: String,
    sk: String,
    id: CampaignId,
    org_id: OrgId,
    name: String,
    status: CampaignStatus,
    cap: Cap,
    settings: CampaignSettings,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    assistant_id: Option<AssistantId>,
    active_calls: u32,
    contacts_total: u64,
    contacts_done: u64,
    calls_total: u64,
    #[serde(default)]
    current_batch: u32,
    created_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    started_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    completed_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    start_refused: Option<StartRefusal>,
    /// Whether its contact counters are kept: true for campaigns created since they are, whose
    /// tally reads them; older ones are counted by query.
    #[serde(default)]
    contacts_counted: bool,
}

impl From<CampaignItem> for Campaign {
    fn from(i: CampaignItem) -> Self {
        Campaign {
            id: i.id,
            org_id: i.org_id,
            name: i.name,
            status: i.status,
            cap: i.cap,
            settings: i.settings,
            assistant_id: i.assistant_id,
            counters: CampaignCounters {
                active_calls: i.active_calls,
                contacts_total: i.contacts_total,
                contacts_done: i.contacts_done,
                calls_total: i.calls_total,
            },
            current_batch: i.current_batch,
            created_at: i.created_at,
            started_at: i.started_at,
            completed_at: i.completed_at,
            start_refused: i.start_refused,
        }
    }
}

impl From<&Campaign> for CampaignItem {
    fn from(c: &Campaign) -> Self {
        CampaignItem {
            pk: org_pk(c.org_id),
            sk: campaign_sk(c.id),
            id: c.id,
            org_id: c.org_id,
            name: c.name.clone(),
            status: c.status,
            cap: c.cap,
            settings: c.settings.clone(),
            assistant_id: c.assistant_id,
            active_calls: c.counters.active_calls,
            contacts_total: c.counters.contacts_total,
            contacts_done: c.counters.contacts_done,
            calls_total: c.counters.calls_total,
            current_batch: c.current_batch,
            created_at: c.created_at,
            started_at: c.started_at,
            completed_at: c.completed_at,
            start_refused: c.start_refused.clone(),
            contacts_counted: true,
        }
    }
}

/// A contact with its keys; `version` grows with every write and guards each one.
#[derive(Serialize, Deserialize)]
struct ContactItem {
    pk: String,
    sk: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    gsi1pk: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    gsi1sk: Option<String>,
    version: u64,
    #[serde(flatten)]
    contact: Contact,
}

impl ContactItem {
    fn new(contact: Contact, version: u64) -> Self {
        let ready = contact.state == ContactState::Ready;
        Self {
            pk: campaign_pk(contact.campaign_id),
            sk: format!("CONTACT#{}", contact.id),
            gsi1pk: ready.then(|| ready_pk(contact.campaign_id)),
            gsi1sk: ready.then(|| ready_sk(&contact)),
            version,
            contact,
        }
    }
}

#[derive(Serialize, Deserialize)]
struct CallItem {
    pk: String,
    sk: String,
    gsi2pk: String,
    gsi2sk: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    gsi3pk: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    gsi3sk: Option<String>,
    version: u64,
    /// Kept beside the call so lists can filter on it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    disposition: Option<CallDisposition>,
    #[serde(flatten)]
    call: Call,
}

impl CallItem {
    fn new(call: Call, version: u64) -> Self {
        let gsi3pk = third_index_partition(&call);
        Self {
            pk: call_pk(call.id),
            sk: "CALL".into(),
            gsi2pk: format!("CAMPAIGN#{}#CALLS", call.campaign_id),
            gsi2sk: call.id.to_string(),
            gsi3sk: gsi3pk.as_ref().map(|_| format!("{:015}#{}", call.last_status_at.timestamp_millis().max(0), call.id)),
            gsi3pk,
            version,
            disposition: call.disposition(),
            call,
        }
    }
}

fn stored_event(dedupe_key: String, occurred_at: DateTime<Utc>, kind: CallEventKind, received_at: DateTime<Utc>) -> StoredCallEvent {
    StoredCallEvent { event: CallEvent { dedupe_key, occurred_at, kind }, received_at }
}

/// Live calls are in the `ACTIVE#campaign` partition of the third index, ended ones whose
/// post-call work is not done in `POSTCALL#campaign`, the others in none.
fn third_index_partition(call: &Call) -> Option<String> {
    if !call.state.is_terminal() {
        Some(format!("ACTIVE#{}", call.campaign_id))
    } else if call.post_call_at.is_none() {
        Some(format!("POSTCALL#{}", call.campaign_id))
    } else {
        None
    }
}

/// The one partition of the ready index that lists orphaned events, oldest first.
const ORPHANS: &str = "ORPHANS";
/// The sort key of a campaign's report counters, in the campaign's partition.
const REPORT_SK: &str = "REPORT";
/// An hour's counters of one campaign: `HOUR#<YYYY-MM-DDTHH>#<campaign>` in `hours_pk(org)`.
const HOUR_SK_PREFIX: &str = "HOUR#";
/// The campaign item's contact counters are `contacts:<name>` (see `ContactTally::from_counters`).
const CONTACT_COUNTER_PREFIX: &str = "contacts:";
/// The partition listing every organisation (`ORG#<id>`), which the daily report walks.
const ORGS_PK: &str = "ORGS";

fn hours_pk(org: OrgId) -> String {
    format!("HOURS#{org}")
}

/// The counters `n:<name>` of a counter item.
fn counters_of(item: &Item) -> Result<ReportCounts> {
    Ok(prefixed_numbers(item, "n:")?.into_iter().filter(|(_, number)| *number != 0).collect())
}

/// The item's number attributes named `<prefix><name>`, by name.
fn prefixed_numbers(item: &Item, prefix: &str) -> Result<Vec<(String, i64)>> {
    let mut numbers = Vec::new();
    for (attribute, value) in item {
        let (Some(name), Ok(number)) = (attribute.strip_prefix(prefix), value.as_n()) else { continue };
        let number = number.parse().map_err(|_| StoreError::Corrupt(format!("counter {attribute} is {number}")))?;
        numbers.push((name.to_string(), number));
    }
    Ok(numbers)
}

fn orphan_pk(provider: CallProvider, provider_call_id: &str) -> String {
    format!("ORPHAN#{}#{provider_call_id}", provider.as_str())
}

fn provider_call_pk(provider: CallProvider, provider_call_id: &str) -> String {
    format!("PROVIDER_CALL#{}#{provider_call_id}", provider.reported_by().as_str())
}

/// An event for a provider call id no call had when it came; expires with the table's TTL.
#[derive(Serialize, Deserialize)]
struct OrphanItem {
    pk: String,
    sk: String,
    gsi1pk: String,
    gsi1sk: String,
    provider: CallProvider,
    provider_call_id: String,
    dedupe_key: String,
    occurred_at: DateTime<Utc>,
    received_at: DateTime<Utc>,
    kind: CallEventKind,
    expires_at: i64,
}

#[derive(Serialize, Deserialize)]
struct EventItem {
    pk: String,
    sk: String,
    /// The call's version when the event was appended: the log's order.
    seq: u64,
    dedupe_key: String,
    occurred_at: DateTime<Utc>,
    received_at: DateTime<Utc>,
    kind: CallEventKind,
}

/// Short random pause before retrying a transaction that lost a race.
async fn backoff(attempt: u32) {
    use rand::Rng;
    let ms = rand::rng().random_range(1..=(2u64 << attempt.min(5)));
    tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
}

#[derive(Serialize, Deserialize)]
struct DoNotCallItem {
    pk: String,
    /// The number, E.164.
    sk: String,
    added_at: DateTime<Utc>,
}

/// How long a schedule execution id is remembered (DynamoDB's TTL removes it afterwards).
const TICK_EXECUTION_MEMORY: chrono::TimeDelta = chrono::TimeDelta::days(1);

fn is_conditional<E: aws_sdk_dynamodb::error::ProvideErrorMetadata, R>(e: &SdkError<E, R>) -> bool {
    e.as_service_error().and_then(|s| s.code()) == Some("ConditionalCheckFailedException")
}

impl DynamoStore {
    /// Writes `item` if attribute `field` still holds `seen` (or the item does not exist when None).
    async fn put_if_unchanged(&self, item: Item, field: &str, seen: Option<i64>) -> Result<bool> {
        let put = self.client.put_item().table_name(&self.table).set_item(Some(item));
        let put = match seen {
            Some(v) => put.condition_expression(format!("{field} = :seen")).expression_attribute_values(":seen", n(v)),
            None => put.condition_expression("attribute_not_exists(pk)"),
        };
        match put.send().await {
            Ok(_) => Ok(true),
            Err(e) if is_conditional(&e) => Ok(false),
            Err(e) => Err(sdk(e)),
        }
    }
}

impl DynamoStore {
    /// The calls of one partition of the third index, each re-checked against
    /// `third_index_partition` because the index may lag the table by a moment.
    async fn calls_in_index(&self, partition: String) -> Result<Vec<Call>> {
        let mut calls = Vec::new();
        let mut start = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(ACTIVE_CALLS_INDEX)
                .key_condition_expression("gsi3pk = :pk")
                .expression_attribute_values(":pk", s(partition.clone()))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(sdk)?;
            for item in out.items.unwrap_or_default() {
                let call = decode::<CallItem>(item)?.call;
                if third_index_partition(&call).as_ref() == Some(&partition) {
                    calls.push(call);
                }
            }
            match out.last_evaluated_key {
                Some(last) => start = Some(last),
                None => return Ok(calls),
            }
        }
    }

    /// Takes (Some) or gives back (None) the right to dial the call; false when it cannot be taken.
    async fn set_dialing_since(&self, org: OrgId, call_id: CallId, since: Option<DateTime<Utc>>) -> Result<bool> {
        self.modify_call(org, call_id, |call| {
            if since.is_some() && (call.state != CallState::Queued || call.provider_call_id.is_some() || call.dialing_since.is_some()) {
                return false;
            }
            call.dialing_since = since;
            true
        })
        .await
    }

    /// Changes the call with `change` (which says false to leave it as it is) under its version,
    /// re-reading and retrying when another writer got there first; true when it was changed.
    async fn modify_call(&self, org: OrgId, call_id: CallId, change: impl Fn(&mut Call) -> bool) -> Result<bool> {
        let mut attempt = 0;
        loop {
            let CallItem { version, mut call, .. } = self.call_item(org, call_id).await?;
            if !change(&mut call) {
                return Ok(false);
            }
            let put = self.put(encode(&CallItem::new(call, version + 1)), "version = :v", &[(":v", n(version))])?;
            if self.transact(vec![put]).await? {
                return Ok(true);
            }
            attempt += 1;
            if attempt > MAX_RETRIES {
                return Err(StoreError::backend(format!("call {call_id} kept changing; retry")));
            }
            backoff(attempt).await;
        }
    }
}

fn millis_of(item: &Item, field: &str) -> Option<i64> {
    item.get(field).and_then(|v| v.as_n().ok()).and_then(|v| v.parse().ok())
}

fn assistant_sk(id: AssistantId) -> String {
    format!("ASSISTANT#{id}")
}

fn provider_guard_sk(provider: domain::ProviderKind, pid: &str) -> String {
    format!("PROVIDER_ASSISTANT#{}#{pid}", provider.as_str())
}

/// The deployment-wide owner record of a provider resource: which organisation holds it.
fn provider_owner_pk(provider: domain::ProviderKind, pid: &str) -> String {
    format!("PROVIDER#{}#{pid}", provider.as_str())
}
const OWNER_SK: &str = "OWNER";

/// An assistant with its keys; its `version` guards every write.
#[derive(Serialize, Deserialize)]
struct AssistantItem {
    pk: String,
    sk: String,
    #[serde(flatten)]
    assistant: Assistant,
}

#[derive(Serialize, Deserialize)]
struct AssistantVersionItem {
    pk: String,
    sk: String,
    #[serde(flatten)]
    version: AssistantVersion,
}

impl DynamoStore {
    async fn assistant(&self, org: OrgId, id: AssistantId) -> Result<Assistant> {
        let item = self.get(org_pk(org), &assistant_sk(id)).await?.ok_or_else(|| StoreError::not_found("assistant", id))?;
        Ok(decode::<AssistantItem>(item)?.assistant)
    }

    /// The writes that save `a` (created when `previous` is None, else replacing that version)
    /// and record its current version.
    fn assistant_writes(&self, a: &Assistant, previous: Option<u32>) -> Result<Vec<TransactWriteItem>> {
        let item = encode(&AssistantItem { pk: org_pk(a.org_id), sk: assistant_sk(a.id), assistant: a.clone() });
        let mut writes = vec![match previous {
            None => self.put(item, "attribute_not_exists(pk)", &[])?,
            Some(v) => self.put(item, "version = :v", &[(":v", n(v))])?,
        }];
        let version =
            AssistantVersionItem { pk: format!("ASSISTANT#{}", a.id), sk: format!("VERSION#{:06}", a.version), version: a.snapshot() };
        writes.push(self.put(encode(&version), "attribute_not_exists(pk)", &[])?);
        if let Some(pid) = a.owned_provider_id() {
            // taken by the first organisation to hold it; kept by it whatever happens to the record
            let owner = HashMap::from([
                ("pk".to_string(), s(provider_owner_pk(a.provider, pid))),
                ("sk".to_string(), s(OWNER_SK)),
                ("org_id".to_string(), s(a.org_id.to_string())),
            ]);
            writes.push(self.put(owner, "attribute_not_exists(pk) OR org_id = :org", &[(":org", s(a.org_id.to_string()))])?);
        }
        if let (None, Some(pid)) = (previous, &a.provider_assistant_id) {
            let guard = HashMap::from([
                ("pk".to_string(), s(org_pk(a.org_id))),
                ("sk".to_string(), s(provider_guard_sk(a.provider, pid))),
                ("assistant_id".to_string(), s(a.id.to_string())),
            ]);
            writes.push(self.put(guard, "attribute_not_exists(pk)", &[])?);
        }
        Ok(writes)
    }

    /// The organisation owning a provider id, if any.
    async fn provider_owner(&self, provider: domain::ProviderKind, pid: &str) -> Result<Option<OrgId>> {
        let Some(owner) = self.get(provider_owner_pk(provider, pid), OWNER_SK).await? else { return Ok(None) };
        let org = owner.get("org_id").and_then(|v| v.as_s().ok()).and_then(|o| OrgId::parse(o).ok());
        org.map(Some).ok_or_else(|| StoreError::Corrupt(format!("the owner record of {pid} names no organisation")))
    }

    /// Not found when another organisation owns `new`'s provider id (indistinguishable from an id
    /// that does not exist).
    async fn check_provider_owner(&self, org: OrgId, new: &NewAssistant) -> Result<()> {
        let Some(pid) = new.owned_provider_id() else { return Ok(()) };
        match self.provider_owner(new.provider, pid).await? {
            Some(owner) if owner != org => Err(StoreError::not_found("provider assistant", pid)),
            _ => Ok(()),
        }
    }

    /// The assistant holding `new`'s provider id, if any.
    async fn assistant_by_provider_id(&self, org: OrgId, new: &NewAssistant) -> Result<Option<Assistant>> {
        let Some(pid) = &new.provider_assistant_id else { return Ok(None) };
        let Some(guard) = self.get(org_pk(org), &provider_guard_sk(new.provider, pid)).await? else { return Ok(None) };
        let id = guard.get("assistant_id").and_then(|v| v.as_s().ok()).and_then(|id| AssistantId::parse(id).ok());
        let id = id.ok_or_else(|| StoreError::Corrupt(format!("provider guard of {pid} names no assistant")))?;
        Ok(Some(self.assistant(org, id).await?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_dynamodb::types::CancellationReason;

    fn reasons(codes: &[&str]) -> Vec<CancellationReason> {
        codes.iter().map(|c| CancellationReason::builder().code(*c).message(format!("{c} happened")).build()).collect()
    }

    #[test]
    fn a_canceled_transaction_is_a_race_a_throttle_or_a_refusal() {
        assert_eq!(Cancellation::of(&reasons(&["None", "ConditionalCheckFailed"])), Cancellation::LostRace);
        assert_eq!(Cancellation::of(&reasons(&["TransactionConflict", "None"])), Cancellation::LostRace);
        assert_eq!(Cancellation::of(&reasons(&["None", "ThrottlingError"])), Cancellation::Throttled);
        // a refusal wins over a race or a throttle: retrying could never succeed
        assert_eq!(
            Cancellation::of(&reasons(&["ConditionalCheckFailed", "ThrottlingError", "ValidationError"])),
            Cancellation::Refused { index: 2, reason: "ValidationError happened".into() }
        );
    }

    #[test]
    fn a_refused_step_is_named_by_its_key() {
        let store = DynamoStore::new(
            Client::from_conf(aws_sdk_dynamodb::Config::builder().behavior_version(aws_config::BehaviorVersion::latest()).build()),
            "t",
        );
        let item = Item::from([("pk".to_string(), s("CAMPAIGN#c1")), ("sk".to_string(), s("CONTACT#k1"))]);
        let step = store.put(item, "attribute_not_exists(pk)", &[]).unwrap();
        assert_eq!(item_key(&step), "item CAMPAIGN#c1 / CONTACT#k1");
    }

    /// Contacts written before consent was recorded are finalised as `no_consent` by the
    /// migration, counted done, and only once.
    #[tokio::test]
    async fn contacts_without_consent_are_finalised_by_the_migration() {
        use crate::{CampaignStore, OrgStore};
        let Some(store) = crate::testing::dynamodb_test_store("no_consent").await else { return };
        let org = store.create_org("Acme").await.unwrap().id;
        let new = NewCampaign::parse("old", Cap::DEFAULT, CampaignSettings::default()).unwrap();
        let campaign = store.create_campaign(org, new).await.unwrap();
        let consent = domain::Consent::on_file(Utc::now());
        let contacts = (0..3)
            .map(|i| NewContact::new(E164::parse(&format!("+1415555011{i}"), None).unwrap(), chrono_tz::UTC, consent.clone()))
            .collect();
        let added = store.add_contacts(org, campaign.id, contacts, Utc::now()).await.unwrap();
        let ids: Vec<ContactId> = store
            .list_contacts(org, campaign.id, crate::ContactFilter::default(), crate::PageRequest::default())
            .await
            .unwrap()
            .items
            .iter()
            .map(|c| c.id)
            .collect();
        assert_eq!((added.added, ids.len()), (3, 3));
        for (i, id) in ids[..2].iter().enumerate() {
            let key = [("pk".to_string(), s(campaign_pk(campaign.id))), ("sk".to_string(), s(format!("CONTACT#{id}")))];
            let update = store.client.update_item().table_name(&store.table).set_key(Some(key.into()));
            // as written before consent existed: no attribute, or an explicit null
            let update = if i == 0 {
                update.update_expression("REMOVE consent")
            } else {
                update.update_expression("SET consent = :null").expression_attribute_values(":null", AttributeValue::Null(true))
            };
            update.send().await.unwrap();
        }
        assert_eq!(store.finalise_contacts_without_consent(Utc::now()).await.unwrap(), 2);
        assert_eq!(store.finalise_contacts_without_consent(Utc::now()).await.unwrap(), 0, "a second run finds none");
        let tally = store.contact_tally(org, campaign.id).await.unwrap();
        assert_eq!(tally.by_state, BTreeMap::from([(ContactState::Done, 2), (ContactState::Ready, 1)]));
        assert_eq!(tally.by_disposition, BTreeMap::from([(ContactDisposition::NoConsent, 2)]));
        assert_eq!(store.get_campaign(org, campaign.id).await.unwrap().counters.contacts_done, 2);
        assert_eq!(store.get_contact(org, campaign.id, ids[2]).await.unwrap().consent, Some(consent));
    }

    /// A campaign created before contact counters were kept (no marker, no counters) is still
    /// tallied right, by counting its contacts.
    #[tokio::test]
    async fn a_campaign_from_before_contact_counters_is_counted_by_query() {
        use crate::{CampaignStore, OrgStore};
        let Some(store) = crate::testing::dynamodb_test_store("legacy_tally").await else { return };
        let org = store.create_org("Acme").await.unwrap().id;
        let new = NewCampaign::parse("old", Cap::DEFAULT, CampaignSettings::default()).unwrap();
        let campaign = store.create_campaign(org, new).await.unwrap();
        let contacts = (0..3)
            .map(|i| {
                NewContact::new(
                    E164::parse(&format!("+1415555010{i}"), None).unwrap(),
                    chrono_tz::UTC,
                    domain::Consent::on_file(chrono::Utc::now()),
                )
            })
            .collect();
        store.add_contacts(org, campaign.id, contacts, Utc::now()).await.unwrap();
        let key = [("pk".to_string(), s(org_pk(org))), ("sk".to_string(), s(campaign_sk(campaign.id)))];
        let old = store.get(org_pk(org), &campaign_sk(campaign.id)).await.unwrap().unwrap();
        let remove: Vec<String> =
            old.keys().filter(|a| a.starts_with(CONTACT_COUNTER_PREFIX) || *a == "contacts_counted").cloned().collect();
        assert_eq!(remove.len(), 2, "the marker and the ready count: {remove:?}");
        let mut unkept = store.client.update_item().table_name(&store.table).set_key(Some(key.into()));
        let mut names = Vec::new();
        for (i, attribute) in remove.into_iter().enumerate() {
            names.push(format!("#a{i}"));
            unkept = unkept.expression_attribute_names(format!("#a{i}"), attribute);
        }
        unkept.update_expression(format!("REMOVE {}", names.join(", "))).send().await.unwrap();
        let tally = store.contact_tally(org, campaign.id).await.unwrap();
        assert_eq!(tally.by_state, BTreeMap::from([(ContactState::Ready, 3)]));
    }
}
