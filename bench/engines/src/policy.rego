# tenantgate's API-key decision for a route with a concrete tenant, in Rego.
#
# input: {"key": <sha256 hex of the raw key>, "route": <route id>,
#         "method": "GET" | "POST" | ..., "env": <gateway environment>, "now": <Unix seconds>}
# data:  api_keys (by sha256), apps, orgs, products, routes, roles (by id), converted
#        from the snapshot document by src/rego.rs (times as Unix seconds).
package tenantgate

import rego.v1

default allow := false

allow if {
	# step 5: key known, active, not expired; app approved
	key := data.api_keys[input.key]
	key.status == "active"
	not expired(key)
	app := data.apps[key.app]
	app.status == "approved"

	# step 9: the app's organization covers the route's tenant
	route := data.routes[input.route]
	tenant := data.orgs[route.tenant]
	covers(app.organization, route.tenant, tenant)

	# step 10: tenant and parent active and not expired
	lineage_ok(tenant)

	# step 11: gateway environment allowed for the tenant and the key
	input.env in tenant.environments
	key_env_ok(key)

	# step 12: the route is in one of the app's products offered in this environment
	subscribed(app, input.route)

	# step 13: read-only keys only read
	read_only_ok(key)

	# step 14: team right; step 15: role permission
	team_ok(app, route)
	permission_ok(app, route)
}

safe if input.method in {"GET", "HEAD", "OPTIONS"}

expired(obj) if input.now >= obj.expires_at

covers(org, tenant_id, _) if org == tenant_id

covers(org, _, tenant) if tenant.parent == org

org_ok(org) if {
	org.status == "active"
	not expired(org)
}

lineage_ok(tenant) if {
	org_ok(tenant)
	not tenant.parent
}

lineage_ok(tenant) if {
	org_ok(tenant)
	org_ok(data.orgs[tenant.parent])
}

key_env_ok(key) if not key.environments

key_env_ok(key) if count(key.environments) == 0

key_env_ok(key) if input.env in key.environments

subscribed(app, route_id) if {
	some product_id in app.products
	product := data.products[product_id]
	route_id in product.routes
	product_env_ok(product)
}

# An absent or empty list allows every environment of the product's organization.
product_env_ok(product) if input.env in product.environments

product_env_ok(product) if {
	not product.environments
	input.env in data.orgs[product.organization].environments
}

product_env_ok(product) if {
	count(product.environments) == 0
	input.env in data.orgs[product.organization].environments
}

read_only_ok(_) if safe

read_only_ok(key) if not key.read_only

team_ok(_, route) if not route.teams

team_ok(app, route) if {
	some team in route.teams
	right_ok(app.teams[team])
}

team_ok(app, _) if right_ok(app.teams["*"])

right_ok(right) if right == "write"

right_ok(right) if {
	right == "read"
	safe
}

permission_ok(_, route) if {
	safe
	not route.permissions.read
}

permission_ok(app, route) if {
	safe
	granted(app, route.permissions.read)
}

permission_ok(_, route) if {
	not safe
	not route.permissions.write
}

permission_ok(app, route) if {
	not safe
	granted(app, route.permissions.write)
}

# "*" grants everything; "apis:*" every permission starting with "apis:".
granted(app, wanted) if {
	some role_id in app.roles
	some grant in data.roles[role_id].permissions
	grant_matches(grant, wanted)
}

grant_matches(grant, wanted) if grant == wanted

grant_matches(grant, wanted) if {
	endswith(grant, "*")
	startswith(wanted, trim_suffix(grant, "*"))
}
