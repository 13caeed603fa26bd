//! Minimal private work teams: `CreateWorkteam`, `DescribeWorkteam`, `ListWorkteams` and
//! `DeleteWorkteam`. They exist so that workforce deletion and OIDC updates can be blocked.

use std::sync::LazyLock;

use chrono::Utc;
use serde::Deserialize;
use serde_json::{Value, json};

use super::epoch_seconds;
use super::shapes::{GROUP_NAME, ListRequest, TagInput, WORKTEAM_NAME, check_list, check_tags};
use super::workforce::paginate;
use crate::error::ApiError;
use crate::lifecycle::Workteam;
use crate::state::{Inner, Scope};
use crate::validate::{Pattern, Violations};

static DESCRIPTION: LazyLock<Pattern> = LazyLock::new(|| Pattern::new(".+"));

/// Maximum work teams per account and region, from the `CreateWorkteam` documentation.
const MAX_WORKTEAMS: usize = 25;

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateWorkteamRequest {
    pub workteam_name: Option<String>,
    pub workforce_name: Option<String>,
    pub member_definitions: Option<Vec<MemberDefinition>>,
    pub description: Option<String>,
    pub notification_configuration: Option<Value>,
    pub worker_access_configuration: Option<Value>,
    pub tags: Option<Vec<TagInput>>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct MemberDefinition {
    pub cognito_member_definition: Option<CognitoMemberDefinition>,
    pub oidc_member_definition: Option<OidcMemberDefinition>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CognitoMemberDefinition {
    pub user_pool: Option<String>,
    pub user_group: Option<String>,
    pub client_id: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct OidcMemberDefinition {
    pub groups: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct WorkteamNameRequest {
    pub workteam_name: Option<String>,
}

fn check_workteam_name(v: &mut Violations, name: Option<&String>) {
    if v.required("workteamName", name)
        && let Some(name) = name
    {
        v.string("workteamName", name, 1, 63, Some(&WORKTEAM_NAME));
    }
}

fn check_members(v: &mut Violations, members: &[MemberDefinition]) {
    let shown: Vec<String> = members
        .iter()
        .map(|_| "MemberDefinition".to_owned())
        .collect();
    v.count("memberDefinitions", &shown, 1, 10);
    for (index, member) in members.iter().enumerate() {
        let path = format!("memberDefinitions.{}.member", index + 1);
        if let Some(cognito) = &member.cognito_member_definition {
            let fields = [
                ("userPool", &cognito.user_pool, 55),
                ("userGroup", &cognito.user_group, 128),
                ("clientId", &cognito.client_id, 1024),
            ];
            for (field, value, max) in fields {
                let field_path = format!("{path}.cognitoMemberDefinition.{field}");
                if v.required(&field_path, value.as_ref())
                    && let Some(value) = value
                {
                    v.string(&field_path, value, 1, max, None);
                }
            }
        }
        if let Some(oidc) = &member.oidc_member_definition {
            let groups_path = format!("{path}.oidcMemberDefinition.groups");
            if v.required(&groups_path, oidc.groups.as_ref())
                && let Some(groups) = &oidc.groups
            {
                v.count(&groups_path, groups, 1, 10);
                for (group_index, group) in groups.iter().enumerate() {
                    let group_path = format!("{groups_path}.{}.member", group_index + 1);
                    v.string(&group_path, group, 1, 63, Some(&GROUP_NAME));
                }
            }
        }
    }
}

/// Rejects member lists that mix Cognito and OIDC members, leave an entry empty, or name
/// different Cognito user pools or app clients.
fn check_member_kinds(members: &[MemberDefinition]) -> Result<(), ApiError> {
    let cognito = members
        .iter()
        .filter(|m| m.cognito_member_definition.is_some())
        .count();
    let oidc = members
        .iter()
        .filter(|m| m.oidc_member_definition.is_some())
        .count();
    let both = members
        .iter()
        .any(|m| m.cognito_member_definition.is_some() && m.oidc_member_definition.is_some());
    if both || (cognito > 0 && oidc > 0) {
        return Err(ApiError::validation(
            "MemberDefinitions cannot mix CognitoMemberDefinition and OidcMemberDefinition.",
        ));
    }
    if cognito + oidc < members.len() {
        return Err(ApiError::validation(
            "Each MemberDefinition needs a CognitoMemberDefinition or an OidcMemberDefinition.",
        ));
    }
    let mut pools = members
        .iter()
        .filter_map(|m| m.cognito_member_definition.as_ref())
        .map(|c| (&c.user_pool, &c.client_id));
    if let Some(first) = pools.next()
        && pools.any(|other| other != first)
    {
        return Err(ApiError::validation(
            "All CognitoMemberDefinitions must use the same UserPool and ClientId.",
        ));
    }
    Ok(())
}

pub fn create(
    inner: &mut Inner,
    scope: &Scope,
    request: CreateWorkteamRequest,
) -> Result<Value, ApiError> {
    let mut v = Violations::default();
    check_workteam_name(&mut v, request.workteam_name.as_ref());
    if v.required("memberDefinitions", request.member_definitions.as_ref())
        && let Some(members) = &request.member_definitions
    {
        check_members(&mut v, members);
    }
    if v.required("description", request.description.as_ref())
        && let Some(description) = &request.description
    {
        v.string("description", description, 1, 200, Some(&DESCRIPTION));
    }
    if let Some(workforce_name) = &request.workforce_name {
        v.string(
            "workforceName",
            workforce_name,
            1,
            63,
            Some(&super::shapes::WORKFORCE_NAME),
        );
    }
    if let Some(tags) = &request.tags {
        check_tags(&mut v, tags);
    }
    v.finish()?;
    let members = request.member_definitions.clone().unwrap_or_default();
    check_member_kinds(&members)?;

    let name = request.workteam_name.clone().unwrap_or_default();
    let state = inner.region_mut(scope);
    // A private team joins the region's only private workforce; a named workforce must be it.
    let workforce = match &request.workforce_name {
        Some(wanted) => state.workforce.as_ref().filter(|w| &w.name == wanted),
        None => state.workforce.as_ref(),
    };
    let Some(workforce) = workforce else {
        return Err(ApiError::validation(format!(
            "No workforce found with name {}.",
            request
                .workforce_name
                .as_deref()
                .unwrap_or("(the private workforce)")
        )));
    };
    if state.workteams.contains_key(&name) {
        return Err(ApiError::resource_in_use(format!(
            "The work team {name} already exists."
        )));
    }
    if state.workteams.len() >= MAX_WORKTEAMS {
        return Err(ApiError::client(
            "ResourceLimitExceeded",
            format!("An account can have at most {MAX_WORKTEAMS} work teams per region."),
        ));
    }

    let now = Utc::now();
    let arn = format!(
        "arn:aws:sagemaker:{}:{}:workteam/private-crowd/{name}",
        scope.region, scope.account
    );
    let member_definitions = member_definitions_json(&members);
    let team = Workteam {
        name: name.clone(),
        arn: arn.clone(),
        workforce_name: workforce.name.clone(),
        workforce_arn: workforce.arn.clone(),
        description: request.description.unwrap_or_default(),
        member_definitions,
        notification_configuration: request.notification_configuration,
        worker_access_configuration: request.worker_access_configuration,
        sub_domain: workforce.sub_domain.clone(),
        create_date: now,
        last_updated_date: now,
    };
    state.workteams.insert(name, team);
    Ok(json!({ "WorkteamArn": arn }))
}

pub fn describe(
    inner: &mut Inner,
    scope: &Scope,
    request: WorkteamNameRequest,
) -> Result<Value, ApiError> {
    let name = checked_name(request.workteam_name)?;
    let state = inner.region_mut(scope);
    let team = state
        .workteams
        .get(&name)
        .ok_or_else(|| no_workteam(&name))?;
    Ok(json!({ "Workteam": render(team) }))
}

pub fn list(inner: &mut Inner, scope: &Scope, request: ListRequest) -> Result<Value, ApiError> {
    let mut v = Violations::default();
    check_list(&mut v, &request, &WORKTEAM_NAME);
    v.finish()?;

    let state = inner.region_mut(scope);
    let mut teams: Vec<&Workteam> = state
        .workteams
        .values()
        .filter(|t| {
            request
                .name_contains
                .as_ref()
                .is_none_or(|part| t.name.contains(part.as_str()))
        })
        .collect();
    match request.sort_by.as_deref() {
        Some("Name") => teams.sort_by(|a, b| a.name.cmp(&b.name)),
        _ => teams.sort_by_key(|t| t.create_date),
    }
    if request.sort_order.as_deref() == Some("Descending") {
        teams.reverse();
    }
    let rendered: Vec<Value> = teams.into_iter().map(render).collect();
    let (page, next_token) =
        paginate(rendered, request.next_token.as_deref(), request.max_results)?;
    let mut body = json!({ "Workteams": page });
    if let Some(token) = next_token {
        body["NextToken"] = json!(token);
    }
    Ok(body)
}

pub fn delete(
    inner: &mut Inner,
    scope: &Scope,
    request: WorkteamNameRequest,
) -> Result<Value, ApiError> {
    let name = checked_name(request.workteam_name)?;
    let state = inner.region_mut(scope);
    if state.workteams.remove(&name).is_none() {
        return Err(no_workteam(&name));
    }
    Ok(json!({ "Success": true }))
}

fn checked_name(name: Option<String>) -> Result<String, ApiError> {
    let mut v = Violations::default();
    check_workteam_name(&mut v, name.as_ref());
    v.finish()?;
    Ok(name.unwrap_or_default())
}

fn no_workteam(name: &str) -> ApiError {
    // NOTE: AWS is known to start this message with "The work team"; the rest is a guess.
    ApiError::validation(format!("The work team {name} does not exist."))
}

fn member_definitions_json(members: &[MemberDefinition]) -> Value {
    let entries: Vec<Value> = members
        .iter()
        .map(|member| {
            if let Some(cognito) = &member.cognito_member_definition {
                json!({ "CognitoMemberDefinition": {
                    "UserPool": cognito.user_pool,
                    "UserGroup": cognito.user_group,
                    "ClientId": cognito.client_id,
                }})
            } else if let Some(oidc) = &member.oidc_member_definition {
                json!({ "OidcMemberDefinition": { "Groups": oidc.groups } })
            } else {
                json!({})
            }
        })
        .collect();
    Value::Array(entries)
}

fn render(team: &Workteam) -> Value {
    let mut body = json!({
        "WorkteamName": team.name,
        "WorkteamArn": team.arn,
        "WorkforceArn": team.workforce_arn,
        "MemberDefinitions": team.member_definitions,
        "Description": team.description,
        "SubDomain": team.sub_domain,
        "CreateDate": epoch_seconds(team.create_date),
        "LastUpdatedDate": epoch_seconds(team.last_updated_date),
        "ProductListingIds": [],
    });
    if let Some(notification) = &team.notification_configuration {
        body["NotificationConfiguration"] = notification.clone();
    }
    if let Some(access) = &team.worker_access_configuration {
        body["WorkerAccessConfiguration"] = access.clone();
    }
    body
}
