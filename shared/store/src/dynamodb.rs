//! The DynamoDB store: the single-table design of ARCHITECTURE.md. Every multi-item change is one
//! `TransactWriteItems` whose conditions (item versions, the cap limit, guard items) make it
//! safe under any concurrency; a cancelled transaction is re-read and retried.

use crate::{
    AddedContacts, ApiKey, Applied, AssistantFilter, AssistantStore, CallFilter, CallStore, CampaignStore, Claim, ContactFilter,
    ContactTally, CreatedApiKey, Cursor, DialingStore, DoNotCallAdded, DoNotCallEntry, DoNotCallStore, KeyHash, ORPHAN_MEMORY, OrgStore,
    Page, PageRequest, PlacedCall, Result, StoreError, StoredCallEvent, millis, new_api_key_secret, normalised, now, settle_contact,
    statuses,
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
use domain::{
    Assistant, AssistantId, AssistantPatch, AssistantVersion, Call, CallDisposition, CallEvent, CallEventKind, CallId, CallProvider,
    CallState, CallingArea, Campaign, CampaignCounters, CampaignId, CampaignSettings, CampaignStatus, Cap, Contact, ContactDisposition,
    ContactFate, ContactId, ContactState, DialCheck, DialSlot, E164, EmergencyStop, NewAssistant, NewCampaign, NewContact, OrgId,
    Organisation, Pace, StartRefusal,
};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

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

    /// Runs a transaction; Ok(false) when a condition failed or it collided with another one.
    async fn transact(&self, items: Vec<TransactWriteItem>) -> Result<bool> {
        debug_assert!(items.len() <= MAX_TRANSACTION_ITEMS);
        match self.client.transact_write_items().set_transact_items(Some(items)).send().await {
            Ok(_) => Ok(true),
            Err(SdkError::ServiceError(e)) if matches!(e.err(), TransactWriteItemsError::TransactionCanceledException(_)) => Ok(false),
            Err(e) => Err(sdk(e)),
        }
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
        Ok(TransactWriteItem::builder().update(update.build().map_err(build)?).build())
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
            contact.settle(ContactFate::Done(disposition), now);
            let items = vec![
                self.put(encode(&ContactItem::new(contact, version + 1)), "version = :v", &[(":v", n(version))])?,
                self.update(org_pk(org), campaign_sk(campaign), "SET contacts_done = contacts_done + :one", None, &[(":one", n(1))])?,
            ];
            if self.transact(items).await? {
                return Ok(true);
            }
            attempt += 1;
            if attempt > MAX_RETRIES {
                return Err(StoreError::Backend(format!("a contact of campaign {campaign} kept changing; retry")));
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
            && !position_keys.iter().all(|k| start.contains_key(*k))
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
            let out = query.send().await.map_err(sdk)?;
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

fn sdk<E: std::error::Error + 'static, R: std::fmt::Debug>(e: SdkError<E, R>) -> StoreError {
    StoreError::Backend(DisplayErrorContext(e).to_string())
}

fn build(e: aws_sdk_dynamodb::error::BuildError) -> StoreError {
    StoreError::Backend(e.to_string())
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

#[derive(Serialize, Deserialize)]
struct ApiKeyItem {
    pk: String,
    sk: String,
    hash: String,
    org_id: OrgId,
    created_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    revoked_at: Option<DateTime<Utc>>,
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

impl OrgStore for DynamoStore {
    async fn create_org(&self, name: &str) -> Result<Organisation> {
        let name = Organisation::parse_name(name)?;
        let org = Organisation { id: OrgId::new(), name, created_at: now(), emergency_stop: None };
        let item = encode(&OrgItem { pk: org_pk(org.id), sk: "ORG".into(), org: org.clone() });
        self.client.put_item().table_name(&self.table).set_item(Some(item)).send().await.map_err(sdk)?;
        Ok(org)
    }

    async fn get_org(&self, id: OrgId) -> Result<Organisation> {
        let item = self.get(org_pk(id), "ORG").await?.ok_or_else(|| StoreError::not_found("organisation", id))?;
        Ok(decode::<OrgItem>(item)?.org)
    }

    async fn set_emergency_stop(&self, org: OrgId, stop: Option<EmergencyStop>) -> Result<Organisation> {
        let request = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(org_pk(org)))
            .key("sk", s("ORG"))
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_names("#stop", ORG_STOP)
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllNew);
        let request = match &stop {
            Some(stop) => request.update_expression("SET #stop = :stop").expression_attribute_values(":stop", av(stop)),
            None => request.update_expression("REMOVE #stop"),
        };
        match request.send().await {
            Ok(out) => Ok(decode::<OrgItem>(out.attributes.unwrap_or_default())?.org),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_conditional_check_failed_exception()) => {
                Err(StoreError::not_found("organisation", org))
            }
            Err(e) => Err(sdk(e)),
        }
    }

    async fn create_api_key(&self, org: OrgId) -> Result<CreatedApiKey> {
        self.org_exists(org).await?;
        let secret = new_api_key_secret();
        let key = ApiKey { hash: KeyHash::of_secret(&secret), org_id: org, created_at: now(), revoked_at: None };
        let item = ApiKeyItem {
            pk: format!("APIKEY#{}", key.hash.as_str()),
            sk: "APIKEY".into(),
            hash: key.hash.as_str().into(),
            org_id: org,
            created_at: key.created_at,
            revoked_at: None,
        };
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(encode(&item)))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await
            .map_err(sdk)?;
        Ok(CreatedApiKey { key, secret })
    }

    async fn org_for_api_key(&self, hash: &KeyHash) -> Result<Option<OrgId>> {
        let Some(item) = self.get(format!("APIKEY#{}", hash.as_str()), "APIKEY").await? else { return Ok(None) };
        let key: ApiKeyItem = decode(item)?;
        Ok(key.revoked_at.is_none().then_some(key.org_id))
    }

    async fn revoke_api_key(&self, org: OrgId, hash: &KeyHash) -> Result<()> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(format!("APIKEY#{}", hash.as_str())))
            .key("sk", s("APIKEY"))
            .update_expression("SET revoked_at = if_not_exists(revoked_at, :now)")
            .condition_expression("org_id = :org")
            .expression_attribute_values(":now", av(&now()))
            .expression_attribute_values(":org", s(org.to_string()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_conditional_check_failed_exception()) => {
                Err(StoreError::not_found("api key", &hash.as_str()[..12]))
            }
            Err(e) => Err(sdk(e)),
        }
    }
}

impl CampaignStore for DynamoStore {
    async fn create_campaign(&self, org: OrgId, new: NewCampaign) -> Result<Campaign> {
        self.org_exists(org).await?;
        let campaign = Campaign::draft(org, new, now());
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(encode(&CampaignItem::from(&campaign))))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await
            .map_err(sdk)?;
        Ok(campaign)
    }

    async fn get_campaign(&self, org: OrgId, id: CampaignId) -> Result<Campaign> {
        Ok(self.campaign_item(org, id).await?.into())
    }

    async fn list_campaigns(&self, org: OrgId, page: PageRequest) -> Result<Page<Campaign>> {
        let values = vec![(":pk", s(org_pk(org))), (":prefix", s("CAMPAIGN#"))];
        let (items, next_cursor) =
            self.page::<CampaignItem>(None, "pk = :pk AND begins_with(sk, :prefix)", None, values, &page, &["pk", "sk"]).await?;
        Ok(Page { items: items.into_iter().map(Campaign::from).collect(), next_cursor })
    }

    async fn campaigns_with_status(&self, org: OrgId, status: CampaignStatus) -> Result<Vec<Campaign>> {
        Ok(self.all_campaigns(org).await?.into_iter().filter(|c| c.status == status).collect())
    }

    async fn cancel_campaign(&self, org: OrgId, id: CampaignId, now: DateTime<Utc>) -> Result<Campaign> {
        let now = millis(now);
        let from = [CampaignStatus::Draft, CampaignStatus::Running, CampaignStatus::Paused];
        self.set_campaign_status(org, id, &from, CampaignStatus::Canceled, now).await?;
        // claims need a running campaign, so no contact becomes ready or dialing from here on
        loop {
            let ready = self.ready_contacts(id, ReadyRange::All, ((MAX_TRANSACTION_ITEMS - 1) / 2) as i32).await?;
            if ready.is_empty() {
                return self.get_campaign(org, id).await;
            }
            let mut items = Vec::with_capacity(ready.len() + 1);
            let mut ids = Vec::with_capacity(ready.len());
            for raw in ready {
                let ContactItem { version, mut contact, .. } = decode(raw)?;
                ids.push(contact.id);
                contact.settle(ContactFate::Done(ContactDisposition::Canceled), now);
                items.push(self.put(encode(&ContactItem::new(contact, version + 1)), "version = :v", &[(":v", n(version))])?);
            }
            let k = ids.len();
            items.push(self.update(org_pk(org), campaign_sk(id), "SET contacts_done = contacts_done + :k", None, &[(":k", n(k))])?);
            if self.transact(items).await? {
                continue;
            }
            // one of them changed meanwhile (its call settled it): take them one by one
            let mut finalised = 0;
            for contact in ids {
                finalised += u32::from(self.finalise_ready_contact(org, id, contact, ContactDisposition::Canceled, now).await?);
            }
            if finalised == 0 {
                // the index lags the table: what it still lists is no longer ready
                backoff(3).await;
            }
        }
    }

    async fn campaigns_using_assistant(&self, org: OrgId, assistant: AssistantId) -> Result<Vec<Campaign>> {
        Ok(self.all_campaigns(org).await?.into_iter().filter(|c| c.assistant_id == Some(assistant)).collect())
    }

    async fn set_campaign_status(
        &self,
        org: OrgId,
        id: CampaignId,
        from: &[CampaignStatus],
        to: CampaignStatus,
        now: DateTime<Utc>,
    ) -> Result<Campaign> {
        let now = millis(now);
        let allowed: Vec<String> = (0..from.len()).map(|i| format!(":from{i}")).collect();
        let mut set = vec!["#status = :to"];
        if to == CampaignStatus::Running {
            set.push("started_at = if_not_exists(started_at, :now)");
        }
        if matches!(to, CampaignStatus::Completed | CampaignStatus::Canceled) {
            set.push("completed_at = :now");
        }
        let mut request = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(org_pk(org)))
            .key("sk", s(campaign_sk(id)))
            .update_expression(format!("SET {}", set.join(", ")))
            .condition_expression(format!("attribute_exists(pk) AND #status IN ({})", allowed.join(", ")))
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":to", av(&to))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllNew);
        if set.len() > 1 {
            request = request.expression_attribute_values(":now", av(&now));
        }
        for (name, status) in allowed.iter().zip(from) {
            request = request.expression_attribute_values(name, av(status));
        }
        match request.send().await {
            Ok(out) => Ok(decode::<CampaignItem>(out.attributes.unwrap_or_default())?.into()),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_conditional_check_failed_exception()) => {
                let current = self.campaign_item(org, id).await?;
                Err(StoreError::Conflict(format!("campaign {id} is {}, not {}", current.status.as_str(), statuses(from))))
            }
            Err(e) => Err(sdk(e)),
        }
    }

    async fn add_contacts(&self, org: OrgId, campaign: CampaignId, contacts: Vec<NewContact>, now: DateTime<Utc>) -> Result<AddedContacts> {
        let now = millis(now);
        let target = Campaign::from(self.campaign_item(org, campaign).await?);
        let mut outcome = AddedContacts::default();
        let listed = self.listed_among(org, &contacts.iter().map(|c| &c.phone).collect::<Vec<_>>()).await?;
        let mut seen = HashSet::new();
        let mut unique = Vec::with_capacity(contacts.len());
        for c in contacts {
            if listed.contains(c.phone.as_str()) {
                outcome.do_not_call += 1;
            } else if seen.insert(c.phone.clone()) {
                let mut contact = Contact::ready(campaign, c, now);
                contact.batch = target.batch_of(target.counters.contacts_total + unique.len() as u64);
                unique.push(contact);
            } else {
                outcome.duplicates += 1;
            }
        }
        let guard = |c: &Contact| -> Result<TransactWriteItem> {
            let item = HashMap::from([
                ("pk".to_string(), s(campaign_pk(campaign))),
                ("sk".to_string(), s(format!("PHONE#{}", c.phone.as_str()))),
                ("contact_id".to_string(), s(c.id.to_string())),
            ]);
            self.put(item, "attribute_not_exists(pk)", &[])
        };
        // the calling areas of a campaign's contacts, kept on it so a tick queries only those open now
        let count = |contacts: &[Contact]| {
            let areas: BTreeSet<String> = contacts.iter().map(|c| c.calling_area().key()).collect();
            self.update(
                org_pk(org),
                campaign_sk(campaign),
                &format!("SET contacts_total = contacts_total + :k ADD {CAMPAIGN_AREAS} :areas"),
                None,
                &[(":k", n(contacts.len())), (":areas", AttributeValue::Ss(areas.into_iter().collect()))],
            )
        };
        for chunk in unique.chunks((MAX_TRANSACTION_ITEMS - 1) / 2) {
            let mut items = Vec::with_capacity(chunk.len() * 2 + 1);
            for c in chunk {
                items.push(guard(c)?);
                items.push(self.put(encode(&ContactItem::new(c.clone(), 1)), "attribute_not_exists(pk)", &[])?);
            }
            items.push(count(chunk)?);
            if self.transact(items).await? {
                outcome.added += chunk.len() as u64;
                continue;
            }
            // some number is already there: add one by one to tell which
            for c in chunk {
                let phone_key = format!("PHONE#{}", c.phone.as_str());
                let mut attempt = 0;
                loop {
                    let items = vec![
                        guard(c)?,
                        self.put(encode(&ContactItem::new(c.clone(), 1)), "attribute_not_exists(pk)", &[])?,
                        count(std::slice::from_ref(c))?,
                    ];
                    if self.transact(items).await? {
                        outcome.added += 1;
                        break;
                    }
                    if self.get(campaign_pk(campaign), &phone_key).await?.is_some() {
                        outcome.duplicates += 1;
                        break;
                    }
                    attempt += 1;
                    if attempt > MAX_RETRIES {
                        return Err(StoreError::Backend("adding a contact kept colliding with other writes".into()));
                    }
                    backoff(attempt).await;
                }
            }
        }
        Ok(outcome)
    }

    async fn get_contact(&self, org: OrgId, campaign: CampaignId, id: ContactId) -> Result<Contact> {
        self.campaign_item(org, campaign).await?;
        let item = self.get(campaign_pk(campaign), &format!("CONTACT#{id}")).await?.ok_or_else(|| StoreError::not_found("contact", id))?;
        Ok(decode::<ContactItem>(item)?.contact)
    }

    async fn record_start_refusal(&self, org: OrgId, id: CampaignId, refusal: StartRefusal) -> Result<()> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(org_pk(org)))
            .key("sk", s(campaign_sk(id)))
            .update_expression("SET start_refused = :refusal")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":refusal", av(&refusal))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if is_conditional(&e) => Err(StoreError::not_found("campaign", id)),
            Err(e) => Err(sdk(e)),
        }
    }

    async fn calling_areas(&self, org: OrgId, campaign: CampaignId) -> Result<Vec<CallingArea>> {
        let item = self.get(org_pk(org), &campaign_sk(campaign)).await?.ok_or_else(|| StoreError::not_found("campaign", campaign))?;
        Self::areas_of(&item)
    }

    async fn contact_tally(&self, org: OrgId, campaign: CampaignId) -> Result<ContactTally> {
        self.campaign_item(org, campaign).await?;
        #[derive(Deserialize)]
        struct Standing {
            state: ContactState,
            #[serde(default)]
            disposition: Option<ContactDisposition>,
        }
        let items = self.query_all(campaign_pk(campaign), "CONTACT#", Some("#state, disposition")).await?;
        let mut tally = ContactTally::default();
        for item in items {
            let standing: Standing = decode(item)?;
            *tally.by_state.entry(standing.state).or_default() += 1;
            if let Some(d) = standing.disposition {
                *tally.by_disposition.entry(d).or_default() += 1;
            }
        }
        Ok(tally)
    }

    async fn list_contacts(&self, org: OrgId, campaign: CampaignId, filter: ContactFilter, page: PageRequest) -> Result<Page<Contact>> {
        self.campaign_item(org, campaign).await?;
        let mut values = vec![(":pk", s(campaign_pk(campaign))), (":prefix", s("CONTACT#"))];
        let condition = equalities(
            &mut values,
            [
                ("#state = :state", ":state", filter.state.map(|v| av(&v))),
                ("disposition = :disposition", ":disposition", filter.disposition.map(|v| av(&v))),
            ],
        );
        let (items, next_cursor) = self
            .page::<ContactItem>(None, "pk = :pk AND begins_with(sk, :prefix)", condition.as_deref(), values, &page, &["pk", "sk"])
            .await?;
        Ok(Page { items: items.into_iter().map(|i| i.contact).collect(), next_cursor })
    }
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
                return Err(StoreError::Backend(format!("call {call_id} kept changing; retry")));
            }
            backoff(attempt).await;
        }
    }
}

fn millis_of(item: &Item, field: &str) -> Option<i64> {
    item.get(field).and_then(|v| v.as_n().ok()).and_then(|v| v.parse().ok())
}

impl DialingStore for DynamoStore {
    async fn active_calls(&self, org: OrgId, campaign: CampaignId) -> Result<Vec<Call>> {
        self.campaign_item(org, campaign).await?;
        self.calls_in_index(format!("ACTIVE#{campaign}")).await
    }

    async fn has_tick_run(&self, org: OrgId, campaign: CampaignId, execution_id: &str) -> Result<bool> {
        self.campaign_item(org, campaign).await?;
        Ok(self.get(campaign_pk(campaign), &format!("TICK#{execution_id}")).await?.is_some())
    }

    async fn record_tick_execution(&self, org: OrgId, campaign: CampaignId, execution_id: &str, now: DateTime<Utc>) -> Result<bool> {
        self.campaign_item(org, campaign).await?;
        let item = HashMap::from([
            ("pk".to_string(), s(campaign_pk(campaign))),
            ("sk".to_string(), s(format!("TICK#{execution_id}"))),
            ("expires_at".to_string(), n((now + TICK_EXECUTION_MEMORY).timestamp())),
        ]);
        self.put_if_unchanged(item, "pk", None).await
    }

    async fn begin_dial(&self, org: OrgId, call_id: CallId, now: DateTime<Utc>) -> Result<bool> {
        self.set_dialing_since(org, call_id, Some(millis(now))).await
    }

    async fn abandon_dial(&self, org: OrgId, call_id: CallId) -> Result<()> {
        self.set_dialing_since(org, call_id, None).await.map(drop)
    }

    async fn dial_check(&self, org: OrgId, call_id: CallId) -> Result<DialCheck> {
        let call = self.call_item(org, call_id).await?.call;
        let contact_sk = format!("CONTACT#{}", call.contact_id);
        let keys = [
            (org_pk(org), "ORG".to_string()),
            (org_pk(org), campaign_sk(call.campaign_id)),
            (campaign_pk(call.campaign_id), contact_sk.clone()),
            (dnc_pk(org), call.phone.as_str().to_string()),
        ];
        let (mut org_item, mut campaign, mut contact, mut listed) = (None, None, None, false);
        for item in self.get_many(&keys).await? {
            match (item.get("pk").and_then(|v| v.as_s().ok()), item.get("sk").and_then(|v| v.as_s().ok())) {
                (_, Some(sk)) if sk == "ORG" => org_item = Some(decode::<OrgItem>(item)?.org),
                (_, Some(sk)) if sk.starts_with("CAMPAIGN#") => campaign = Some(Campaign::from(decode::<CampaignItem>(item)?)),
                (_, Some(sk)) if *sk == contact_sk => contact = Some(decode::<ContactItem>(item)?.contact),
                (Some(pk), _) if pk.starts_with("DNC#") => listed = true,
                _ => {}
            }
        }
        let org_item = org_item.ok_or_else(|| StoreError::not_found("organisation", org))?;
        let campaign = campaign.ok_or_else(|| StoreError::Corrupt(format!("call {call_id} names a missing campaign")))?;
        let contact = contact.ok_or_else(|| StoreError::Corrupt(format!("call {call_id} names a missing contact")))?;
        Ok(DialCheck { stopped: org_item.emergency_stop.is_some(), listed, call, campaign, contact })
    }

    async fn record_placed_call(&self, org: OrgId, call_id: CallId, placed: PlacedCall) -> Result<Call> {
        let guard_pk = provider_call_pk(placed.provider, &placed.provider_call_id);
        let mut attempt = 0;
        loop {
            let CallItem { version, mut call, .. } = self.call_item(org, call_id).await?;
            match call.record_placement(&placed.provider_call_id, placed.caller_id.clone(), millis(placed.placed_at)) {
                Ok(true) => {}
                Ok(false) => return Ok(call),
                Err(id) => return Err(StoreError::Conflict(format!("call {call_id} was already placed as {id}"))),
            }
            let guard = HashMap::from([
                ("pk".to_string(), s(guard_pk.clone())),
                ("sk".to_string(), s("PROVIDER_CALL")),
                ("call_id".to_string(), s(call_id.to_string())),
                ("org_id".to_string(), s(org.to_string())),
            ]);
            let mut items = vec![
                self.put(guard, "attribute_not_exists(pk)", &[])?,
                self.put(encode(&CallItem::new(call.clone(), version + 1)), "version = :v", &[(":v", n(version))])?,
            ];
            if let Some(caller_id) = &placed.caller_id {
                items.push(self.update(
                    campaign_pk(call.campaign_id),
                    format!("CONTACT#{}", call.contact_id),
                    "SET callerId = :caller, version = version + :one",
                    None,
                    &[(":caller", s(caller_id.as_str())), (":one", n(1))],
                )?);
            }
            if self.transact(items).await? {
                return Ok(call);
            }
            if let Some(owner) = self.get(guard_pk.clone(), "PROVIDER_CALL").await?
                && owner.get("call_id").and_then(|v| v.as_s().ok()) != Some(&call_id.to_string())
            {
                return Err(StoreError::Conflict(format!(
                    "{} call {} already belongs to another call",
                    placed.provider.as_str(),
                    placed.provider_call_id
                )));
            }
            attempt += 1;
            if attempt > MAX_RETRIES {
                return Err(StoreError::Backend(format!("call {call_id} kept changing while its provider id was stored; retry")));
            }
            backoff(attempt).await;
        }
    }

    async fn reserve_dial_slot(&self, account: &str, now: DateTime<Utc>, pace: Pace, max_wait: std::time::Duration) -> Result<DialSlot> {
        let now = millis(now);
        let mut attempt = 0;
        loop {
            let seen = self.get(format!("PACE#{account}"), "PACE").await?.as_ref().and_then(|i| millis_of(i, "next_free"));
            let next_free = seen.and_then(DateTime::from_timestamp_millis);
            let (slot, next) = domain::dialing::reserve_slot(next_free, now, pace, max_wait);
            let Some(next) = next else { return Ok(slot) };
            let item = HashMap::from([
                ("pk".to_string(), s(format!("PACE#{account}"))),
                ("sk".to_string(), s("PACE")),
                ("next_free".to_string(), n(next.timestamp_millis())),
            ]);
            if self.put_if_unchanged(item, "next_free", seen).await? {
                return Ok(slot);
            }
            attempt += 1;
            if attempt > MAX_RETRIES {
                return Err(StoreError::Backend(format!("the pace of {account} is contended; retry")));
            }
            backoff(attempt).await;
        }
    }

    async fn take_caller_id(&self, org: OrgId, pool: &[E164], preferred: Option<&E164>, now: DateTime<Utc>) -> Result<Option<E164>> {
        let pk = format!("CALLERID#{org}");
        let now = millis(now);
        let mut attempt = 0;
        loop {
            let used: BTreeMap<String, i64> = self
                .query_all(pk.clone(), "+", None)
                .await?
                .into_iter()
                .filter_map(|i| Some((i.get("sk")?.as_s().ok()?.clone(), millis_of(&i, "last_used")?)))
                .collect();
            let last_used = used.iter().filter_map(|(p, t)| Some((p.clone(), DateTime::from_timestamp_millis(*t)?))).collect();
            let Some(chosen) = domain::dialing::choose_caller_id(pool, &last_used, preferred).cloned() else { return Ok(None) };
            let seen = used.get(chosen.as_str()).copied();
            let stamp = seen.map_or(now.timestamp_millis(), |t| (t + 1).max(now.timestamp_millis()));
            let item = HashMap::from([
                ("pk".to_string(), s(pk.clone())),
                ("sk".to_string(), s(chosen.as_str())),
                ("last_used".to_string(), n(stamp)),
            ]);
            if self.put_if_unchanged(item, "last_used", seen).await? {
                return Ok(Some(chosen));
            }
            attempt += 1;
            if attempt > MAX_RETRIES {
                return Err(StoreError::Backend("the caller ID pool is contended; retry".into()));
            }
            backoff(attempt).await;
        }
    }
}

impl DoNotCallStore for DynamoStore {
    async fn add_do_not_call(&self, org: OrgId, phones: Vec<E164>, now: DateTime<Utc>) -> Result<DoNotCallAdded> {
        let now = millis(now);
        self.org_exists(org).await?;
        let mut outcome = DoNotCallAdded::default();
        let live: Vec<Campaign> = self
            .all_campaigns(org)
            .await?
            .into_iter()
            .filter(|c| matches!(c.status, CampaignStatus::Running | CampaignStatus::Paused))
            .collect();
        for phone in phones {
            let item = encode(&DoNotCallItem { pk: dnc_pk(org), sk: phone.as_str().to_string(), added_at: now });
            let put = self.client.put_item().table_name(&self.table).set_item(Some(item)).condition_expression("attribute_not_exists(pk)");
            match put.send().await {
                Ok(_) => outcome.added += 1,
                Err(e) if e.as_service_error().is_some_and(|s| s.is_conditional_check_failed_exception()) => outcome.already_listed += 1,
                Err(e) => return Err(sdk(e)),
            }
            for campaign in &live {
                let Some(guard) = self.get(campaign_pk(campaign.id), &format!("PHONE#{}", phone.as_str())).await? else { continue };
                let Some(contact) = guard.get("contact_id").and_then(|v| v.as_s().ok()).and_then(|id| ContactId::parse(id).ok()) else {
                    return Err(StoreError::Corrupt(format!("a phone guard of campaign {} names no contact", campaign.id)));
                };
                if self.finalise_ready_contact(org, campaign.id, contact, ContactDisposition::DoNotCall, now).await? {
                    outcome.contacts_finalised += 1;
                }
            }
        }
        Ok(outcome)
    }

    async fn remove_do_not_call(&self, org: OrgId, phone: &E164) -> Result<bool> {
        let out = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("pk", s(dnc_pk(org)))
            .key("sk", s(phone.as_str()))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllOld)
            .send()
            .await
            .map_err(sdk)?;
        Ok(out.attributes.is_some_and(|a| !a.is_empty()))
    }

    async fn is_do_not_call(&self, org: OrgId, phone: &E164) -> Result<bool> {
        Ok(self.get(dnc_pk(org), phone.as_str()).await?.is_some())
    }

    async fn list_do_not_call(&self, org: OrgId, page: PageRequest) -> Result<Page<DoNotCallEntry>> {
        let values = vec![(":pk", s(dnc_pk(org)))];
        let (items, next_cursor) = self.page::<DoNotCallItem>(None, "pk = :pk", None, values, &page, &["pk", "sk"]).await?;
        let items = items
            .into_iter()
            .map(|i| Ok(DoNotCallEntry { phone: E164::try_from(i.sk)?, added_at: i.added_at }))
            .collect::<Result<Vec<_>>>()?;
        Ok(Page { items, next_cursor })
    }
}

impl CallStore for DynamoStore {
    async fn claim_due_contacts(
        &self,
        org: OrgId,
        campaign_id: CampaignId,
        now: DateTime<Utc>,
        max: u32,
        margin: chrono::TimeDelta,
    ) -> Result<Vec<Claim>> {
        let now = millis(now);
        let mut claims = Vec::new();
        let mut attempt = 0;
        // each claim writes its contact and call and checks its number is not listed; plus the campaign and the organisation
        const PER_TRANSACTION: u32 = ((MAX_TRANSACTION_ITEMS - 2) / 3) as u32;
        loop {
            // the transaction's check on the organisation makes the stop exact; reading it here saves the attempt
            let (raw, stopped) = self.campaign_and_stop(org, campaign_id).await?;
            let areas = Self::areas_of(&raw)?;
            let campaign = Campaign::from(decode::<CampaignItem>(raw)?);
            let want = campaign.free_slots().min(max - claims.len() as u32).min(PER_TRANSACTION);
            if campaign.status != CampaignStatus::Running || want == 0 || stopped {
                return Ok(claims);
            }
            if campaign.may_advance_batch() && self.advance_batch(&campaign).await? {
                continue;
            }
            let batch = campaign.claimable_batch();
            let mut candidates = Vec::new();
            for area in campaign.open_areas(&areas, now, margin) {
                for raw in self.ready_contacts(campaign_id, ReadyRange::Due { batch, area, now }, want as i32).await? {
                    candidates.push(decode::<ContactItem>(raw)?);
                }
            }
            candidates.sort_by(|a, b| domain::dialing::claim_order(&a.contact, &b.contact));
            candidates.truncate(want as usize);
            if candidates.is_empty() {
                return Ok(claims);
            }
            let listed = self.listed_among(org, &candidates.iter().map(|c| &c.contact.phone).collect::<Vec<_>>()).await?;
            let (listed, candidates): (Vec<_>, Vec<_>) = candidates.into_iter().partition(|c| listed.contains(c.contact.phone.as_str()));
            let mut finalised = 0;
            for ContactItem { contact, .. } in listed {
                finalised +=
                    u32::from(self.finalise_ready_contact(org, campaign_id, contact.id, ContactDisposition::DoNotCall, now).await?);
            }
            if candidates.is_empty() {
                // none finalised: the index still lists contacts that changed; the next tick looks again
                if finalised == 0 {
                    return Ok(claims);
                }
                continue;
            }
            let mut items = Vec::with_capacity(candidates.len() * 2 + 1);
            let mut batch = Vec::with_capacity(candidates.len());
            for ContactItem { version, mut contact, .. } in candidates {
                contact.attempts += 1;
                contact.state = ContactState::Dialing;
                let call = Call::queued(org, campaign_id, contact.id, contact.attempts, contact.phone.clone(), now);
                contact.last_call_id = Some(call.id);
                items.push(self.put(
                    encode(&ContactItem::new(contact.clone(), version + 1)),
                    "version = :v AND #state = :ready",
                    &[(":v", n(version)), (":ready", av(&ContactState::Ready))],
                )?);
                items.push(self.put(encode(&CallItem::new(call.clone(), 1)), "attribute_not_exists(pk)", &[])?);
                // a number listed since it was read fails the claim; the retry finalises it instead
                items.push(self.check(dnc_pk(org), contact.phone.as_str().to_string(), "attribute_not_exists(pk)")?);
                batch.push(Claim { contact, call });
            }
            items.push(self.check(org_pk(org), "ORG".into(), &format!("attribute_exists(pk) AND attribute_not_exists({ORG_STOP})"))?);
            let k = batch.len() as u32;
            items.push(self.update(
                org_pk(org),
                campaign_sk(campaign_id),
                "SET active_calls = active_calls + :k, calls_total = calls_total + :k",
                Some("#status = :running AND cap = :cap AND active_calls <= :limit"),
                &[
                    (":k", n(k)),
                    (":running", av(&CampaignStatus::Running)),
                    (":cap", n(campaign.cap.get())),
                    (":limit", n(campaign.cap.get() - k)),
                ],
            )?);
            if self.transact(items).await? {
                claims.extend(batch);
                attempt = 0;
                continue;
            }
            attempt += 1;
            if attempt > MAX_RETRIES {
                return Ok(claims);
            }
            backoff(attempt).await;
        }
    }

    async fn apply_call_event(&self, org: OrgId, call_id: CallId, event: CallEvent, received_at: DateTime<Utc>) -> Result<Applied> {
        let (event, received_at) = (normalised(event), millis(received_at));
        let event_sk = format!("EVENT#{}", event.dedupe_key);
        let mut attempt = 0;
        loop {
            let CallItem { version, mut call, .. } = self.call_item(org, call_id).await?;
            let absorbed = call.absorb(&event);
            let log = EventItem {
                pk: call_pk(call_id),
                sk: event_sk.clone(),
                seq: version,
                dedupe_key: event.dedupe_key.clone(),
                occurred_at: event.occurred_at,
                received_at,
                kind: event.kind.clone(),
            };
            let mut items = vec![
                self.put(encode(&log), "attribute_not_exists(pk)", &[])?,
                self.put(encode(&CallItem::new(call.clone(), version + 1)), "version = :v", &[(":v", n(version))])?,
            ];
            let mut contact_fate = None;
            let mut settled = crate::Settled::default();
            // the fate depends on the campaign's status (a canceled one retries nothing): it must not change meanwhile
            let mut status_seen = None;
            if absorbed.decides_contact(&call) {
                let campaign = Campaign::from(self.campaign_item(org, call.campaign_id).await?);
                let raw = self
                    .get(campaign_pk(call.campaign_id), &format!("CONTACT#{}", call.contact_id))
                    .await?
                    .ok_or_else(|| StoreError::Corrupt(format!("call {call_id} names a missing contact")))?;
                let ContactItem { version: contact_version, mut contact, .. } = decode(raw)?;
                if let Some((fate, moved)) = settle_contact(&mut contact, &call, &campaign) {
                    items.push(self.put(
                        encode(&ContactItem::new(contact, contact_version + 1)),
                        "version = :v",
                        &[(":v", n(contact_version))],
                    )?);
                    contact_fate = Some(fate);
                    settled = moved;
                    status_seen = Some(campaign.status);
                }
            }
            let released = u32::from(absorbed.transition.releases_capacity);
            if released != 0 || settled != crate::Settled::default() || status_seen.is_some() {
                let mut values = vec![(":released", n(released)), (":done", n(settled.done)), (":calls", n(settled.calls))];
                if let Some(status) = status_seen {
                    values.push((":seen", av(&status)));
                }
                items.push(self.update(
                    org_pk(org),
                    campaign_sk(call.campaign_id),
                    "SET active_calls = active_calls - :released, contacts_done = contacts_done + :done, calls_total = calls_total + :calls",
                    status_seen.map(|_| "#status = :seen"),
                    &values,
                )?);
            }
            if self.transact(items).await? {
                return Ok(Applied { duplicate: false, call, transition: Some(absorbed.transition), contact_fate });
            }
            if self.get(call_pk(call_id), &event_sk).await?.is_some() {
                let call = self.call_item(org, call_id).await?.call;
                return Ok(Applied { duplicate: true, call, transition: None, contact_fate: None });
            }
            attempt += 1;
            if attempt > MAX_RETRIES {
                return Err(StoreError::Backend(format!("call {call_id} kept changing under this event; retry it")));
            }
            backoff(attempt).await;
        }
    }

    async fn get_call(&self, org: OrgId, id: CallId) -> Result<Call> {
        Ok(self.call_item(org, id).await?.call)
    }

    async fn list_calls(&self, org: OrgId, campaign: CampaignId, filter: CallFilter, page: PageRequest) -> Result<Page<Call>> {
        self.campaign_item(org, campaign).await?;
        let mut values = vec![(":pk", s(format!("CAMPAIGN#{campaign}#CALLS")))];
        let mut conditions = Vec::new();
        if let Some(state) = filter.state {
            conditions.push("#state = :state");
            values.push((":state", s(state.as_str())));
        }
        if let Some(disposition) = filter.disposition {
            conditions.push("disposition = :disposition");
            values.push((":disposition", s(disposition.as_str())));
        }
        let filter = (!conditions.is_empty()).then(|| conditions.join(" AND "));
        let (items, next_cursor) = self
            .page::<CallItem>(
                Some(CAMPAIGN_CALLS_INDEX),
                "gsi2pk = :pk",
                filter.as_deref(),
                values,
                &page,
                &["pk", "sk", "gsi2pk", "gsi2sk"],
            )
            .await?;
        Ok(Page { items: items.into_iter().map(|i| i.call).collect(), next_cursor })
    }

    async fn find_call_by_provider_id(&self, provider: CallProvider, provider_call_id: &str) -> Result<Option<(OrgId, CallId)>> {
        let Some(guard) = self.get(provider_call_pk(provider, provider_call_id), "PROVIDER_CALL").await? else { return Ok(None) };
        let field = |name: &str| {
            guard.get(name).and_then(|v| v.as_s().ok()).ok_or_else(|| StoreError::Corrupt(format!("provider call guard without {name}")))
        };
        let org = OrgId::parse(field("org_id")?).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let call = CallId::parse(field("call_id")?).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        Ok(Some((org, call)))
    }

    async fn call_owner(&self, call: CallId) -> Result<Option<OrgId>> {
        let Some(item) = self.get(call_pk(call), "CALL").await? else { return Ok(None) };
        Ok(Some(decode::<CallItem>(item)?.call.org_id))
    }

    async fn record_orphan_event(
        &self,
        provider: CallProvider,
        provider_call_id: &str,
        event: CallEvent,
        received_at: DateTime<Utc>,
    ) -> Result<()> {
        let (event, received_at) = (normalised(event), millis(received_at));
        let orphan = OrphanItem {
            pk: orphan_pk(provider, provider_call_id),
            sk: format!("EVENT#{}", event.dedupe_key),
            gsi1pk: ORPHANS.into(),
            gsi1sk: format!("{:015}#{}#{}", received_at.timestamp_millis().max(0), orphan_pk(provider, provider_call_id), event.dedupe_key),
            provider,
            provider_call_id: provider_call_id.to_string(),
            dedupe_key: event.dedupe_key,
            occurred_at: event.occurred_at,
            received_at,
            kind: event.kind,
            expires_at: (received_at + ORPHAN_MEMORY).timestamp(),
        };
        self.put_if_unchanged(encode(&orphan), "pk", None).await.map(drop)
    }

    async fn orphan_events(&self, provider: CallProvider, provider_call_id: &str) -> Result<Vec<StoredCallEvent>> {
        let items = self.query_all(orphan_pk(provider, provider_call_id), "EVENT#", None).await?;
        let mut orphans = items.into_iter().map(decode::<OrphanItem>).collect::<Result<Vec<_>>>()?;
        orphans.sort_by(|a, b| (a.received_at, &a.dedupe_key).cmp(&(b.received_at, &b.dedupe_key)));
        Ok(orphans.into_iter().map(|o| stored_event(o.dedupe_key, o.occurred_at, o.kind, o.received_at)).collect())
    }

    async fn orphaned_calls(&self, limit: u32, received_since: DateTime<Utc>) -> Result<Vec<(CallProvider, String)>> {
        let oldest_kept = format!("{:015}", received_since.timestamp_millis().max(0));
        let values = vec![(":pk", s(ORPHANS)), (":lo", s(oldest_kept))];
        let (items, _) = self
            .page::<OrphanItem>(
                Some(READY_INDEX),
                "gsi1pk = :pk AND gsi1sk >= :lo",
                None,
                values,
                &PageRequest::first(PageRequest::MAX_LIMIT),
                &["pk", "sk", "gsi1pk", "gsi1sk"],
            )
            .await?;
        let mut calls: Vec<(CallProvider, String)> = Vec::new();
        for orphan in items {
            let call = (orphan.provider, orphan.provider_call_id);
            if !calls.contains(&call) && calls.len() < limit as usize {
                calls.push(call);
            }
        }
        Ok(calls)
    }

    async fn remove_orphan_events(&self, provider: CallProvider, provider_call_id: &str, dedupe_keys: Vec<String>) -> Result<()> {
        for key in dedupe_keys {
            self.client
                .delete_item()
                .table_name(&self.table)
                .key("pk", s(orphan_pk(provider, provider_call_id)))
                .key("sk", s(format!("EVENT#{key}")))
                .send()
                .await
                .map_err(sdk)?;
        }
        Ok(())
    }

    async fn calls_awaiting_post_call(&self, org: OrgId, campaign: CampaignId) -> Result<Vec<Call>> {
        self.campaign_item(org, campaign).await?;
        self.calls_in_index(format!("POSTCALL#{campaign}")).await
    }

    async fn mark_post_call(&self, org: OrgId, call_id: CallId, at: Option<DateTime<Utc>>) -> Result<bool> {
        self.modify_call(org, call_id, |call| {
            let changes = call.post_call_at.is_some() != at.is_some();
            call.post_call_at = at.map(millis);
            changes
        })
        .await
    }

    async fn list_call_events(&self, org: OrgId, call: CallId) -> Result<Vec<StoredCallEvent>> {
        self.call_item(org, call).await?;
        let mut events: Vec<EventItem> = Vec::new();
        let mut page = PageRequest::first(PageRequest::MAX_LIMIT);
        loop {
            let values = vec![(":pk", s(call_pk(call))), (":prefix", s("EVENT#"))];
            let (items, next) =
                self.page::<EventItem>(None, "pk = :pk AND begins_with(sk, :prefix)", None, values, &page, &["pk", "sk"]).await?;
            events.extend(items);
            match next {
                Some(c) => page.cursor = Some(c),
                None => break,
            }
        }
        events.sort_by_key(|e| e.seq);
        Ok(events.into_iter().map(|e| stored_event(e.dedupe_key, e.occurred_at, e.kind, e.received_at)).collect())
    }
}

fn assistant_sk(id: AssistantId) -> String {
    format!("ASSISTANT#{id}")
}

fn provider_guard_sk(provider: domain::ProviderKind, pid: &str) -> String {
    format!("PROVIDER_ASSISTANT#{}#{pid}", provider.as_str())
}

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

    /// The assistant holding `new`'s provider id, if any.
    async fn assistant_by_provider_id(&self, org: OrgId, new: &NewAssistant) -> Result<Option<Assistant>> {
        let Some(pid) = &new.provider_assistant_id else { return Ok(None) };
        let Some(guard) = self.get(org_pk(org), &provider_guard_sk(new.provider, pid)).await? else { return Ok(None) };
        let id = guard.get("assistant_id").and_then(|v| v.as_s().ok()).and_then(|id| AssistantId::parse(id).ok());
        let id = id.ok_or_else(|| StoreError::Corrupt(format!("provider guard of {pid} names no assistant")))?;
        Ok(Some(self.assistant(org, id).await?))
    }
}

impl AssistantStore for DynamoStore {
    async fn create_assistant(&self, org: OrgId, new: NewAssistant, now: DateTime<Utc>) -> Result<Assistant> {
        self.org_exists(org).await?;
        let assistant = Assistant::new(org, new, millis(now));
        if self.transact(self.assistant_writes(&assistant, None)?).await? {
            return Ok(assistant);
        }
        Err(StoreError::Conflict(format!(
            "{} assistant {} is already in the directory; import it to update it",
            assistant.provider.as_str(),
            assistant.provider_assistant_id.as_deref().unwrap_or_default()
        )))
    }

    async fn import_assistant(&self, org: OrgId, new: NewAssistant, now: DateTime<Utc>) -> Result<(Assistant, bool)> {
        self.org_exists(org).await?;
        let now = millis(now);
        let mut attempt = 0;
        loop {
            let (assistant, writes, created) = match self.assistant_by_provider_id(org, &new).await? {
                Some(mut existing) => {
                    let before = existing.version;
                    let patch = AssistantPatch { name: Some(new.name.clone()), config: Some(new.config.clone()), active: None };
                    if !existing.apply(&patch, now) {
                        return Ok((existing, false));
                    }
                    let writes = self.assistant_writes(&existing, Some(before))?;
                    (existing, writes, false)
                }
                None => {
                    let created = Assistant::new(org, new.clone(), now);
                    let writes = self.assistant_writes(&created, None)?;
                    (created, writes, true)
                }
            };
            // a lost race (a concurrent import of the same id) is re-read and retried
            if self.transact(writes).await? {
                return Ok((assistant, created));
            }
            attempt += 1;
            if attempt > MAX_RETRIES {
                return Err(StoreError::Backend("importing the assistant kept colliding with other writes".into()));
            }
            backoff(attempt).await;
        }
    }

    async fn get_assistant(&self, org: OrgId, id: AssistantId) -> Result<Assistant> {
        self.assistant(org, id).await
    }

    async fn list_assistants(&self, org: OrgId, filter: AssistantFilter, page: PageRequest) -> Result<Page<Assistant>> {
        let mut values = vec![(":pk", s(org_pk(org))), (":prefix", s("ASSISTANT#"))];
        let condition = equalities(
            &mut values,
            [
                ("active = :active", ":active", filter.active.map(AttributeValue::Bool)),
                ("#source = :source", ":source", filter.source.map(|v| av(&v))),
            ],
        );
        let (items, next_cursor) = self
            .page::<AssistantItem>(None, "pk = :pk AND begins_with(sk, :prefix)", condition.as_deref(), values, &page, &["pk", "sk"])
            .await?;
        Ok(Page { items: items.into_iter().map(|i| i.assistant).collect(), next_cursor })
    }

    async fn update_assistant(
        &self,
        org: OrgId,
        id: AssistantId,
        expected_version: u32,
        patch: AssistantPatch,
        now: DateTime<Utc>,
    ) -> Result<Assistant> {
        let mut assistant = self.assistant(org, id).await?;
        if assistant.version != expected_version {
            return Err(StoreError::StaleVersion { expected: expected_version, current: assistant.version });
        }
        if !assistant.apply(&patch, millis(now)) {
            return Ok(assistant);
        }
        if self.transact(self.assistant_writes(&assistant, Some(expected_version))?).await? {
            return Ok(assistant);
        }
        let current = self.assistant(org, id).await?;
        Err(StoreError::StaleVersion { expected: expected_version, current: current.version })
    }

    async fn delete_assistant(&self, org: OrgId, id: AssistantId) -> Result<()> {
        let assistant = self.assistant(org, id).await?;
        let mut deletes = vec![(org_pk(org), assistant_sk(id))];
        if let Some(pid) = &assistant.provider_assistant_id {
            deletes.push((org_pk(org), provider_guard_sk(assistant.provider, pid)));
        }
        deletes.extend((1..=assistant.version).map(|v| (format!("ASSISTANT#{id}"), format!("VERSION#{v:06}"))));
        // the record and its guard first, so a half-finished delete leaves only unreachable versions
        for (pk, sk) in deletes {
            self.client.delete_item().table_name(&self.table).key("pk", s(pk)).key("sk", s(sk)).send().await.map_err(sdk)?;
        }
        Ok(())
    }

    async fn list_assistant_versions(&self, org: OrgId, id: AssistantId) -> Result<Vec<AssistantVersion>> {
        self.assistant(org, id).await?;
        let mut versions = Vec::new();
        let mut page = PageRequest::first(PageRequest::MAX_LIMIT);
        loop {
            let values = vec![(":pk", s(format!("ASSISTANT#{id}"))), (":prefix", s("VERSION#"))];
            let (items, next) = self
                .page::<AssistantVersionItem>(None, "pk = :pk AND begins_with(sk, :prefix)", None, values, &page, &["pk", "sk"])
                .await?;
            versions.extend(items.into_iter().map(|i| i.version));
            match next {
                Some(c) => page.cursor = Some(c),
                None => return Ok(versions),
            }
        }
    }
}
