// Validate custom resources against the CRD OpenAPI schemas compiled into the @kubernetes-models packages
// (installed by scripts/install_tools.sh into .tools/node; @kubernetes-models/cert-manager for Certificates). Usage:
//   node helm/tests/validate_crds.mjs NODE_MODULES_DIR < objects.json     (a JSON array of objects)
// Prints one line per object and exits 1 if any object is invalid or of an unknown kind.
import { pathToFileURL } from "node:url";
import { join } from "node:path";
import { readFileSync } from "node:fs";

const nm = process.argv[2];
const kinds = {
  "keda.sh/v1alpha1/ScaledObject": "@kubernetes-models/keda/keda.sh/v1alpha1/ScaledObject.js",
  "monitoring.coreos.com/v1/ServiceMonitor": "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor.js",
  "monitoring.coreos.com/v1/PodMonitor": "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PodMonitor.js",
  "monitoring.coreos.com/v1/PrometheusRule": "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PrometheusRule.js",
  "cert-manager.io/v1/Certificate": "@kubernetes-models/cert-manager/cert-manager.io/v1/Certificate.js",
};
const objects = JSON.parse(readFileSync(0, "utf8"));
let failed = 0;
for (const obj of objects) {
  const key = `${obj.apiVersion}/${obj.kind}`;
  const name = `${key} ${obj.metadata?.name}`;
  if (!(key in kinds)) {
    console.log(`UNKNOWN ${name}`);
    failed++;
    continue;
  }
  const mod = await import(pathToFileURL(join(nm, kinds[key])).href);
  const Model = mod[obj.kind];
  try {
    new Model(obj).validate();
    console.log(`VALID ${name}`);
  } catch (e) {
    console.log(`INVALID ${name}: ${e.message}`);
    failed++;
  }
}
process.exit(failed ? 1 : 0);
