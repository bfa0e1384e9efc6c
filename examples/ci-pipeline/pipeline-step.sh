#!/usr/bin/env bash
# One deploy step of any CI system (GitLab, GitHub Actions, Jenkins, Tekton...), run with the
# pipeline's own credentials (ServiceAccount ci/pipeline): ask for `deploy`, deploy, end.
#
#   BUILD=4711 PIPELINE_RUN=88 ./pipeline-step.sh
#
# 1. create the deploy Job, suspended: it cannot run before its grant exists;
# 2. file the AccessRequest naming that Job as its task, and wait until it is Active
#    (FILE_WITH=zsp, the default: `zsp request --wait`; FILE_WITH=kubectl: `kubectl apply`
#    and `kubectl wait`, for runners without zsp);
# 3. resume the Job and wait for it; the Job runs as ci/deployer, which holds the grant;
# 4. `zsp done` on the way out, whatever happened: the grant ends now, not at its TTL.
#    The Job finishing ends it too (taskRef), so a killed runner leaves nothing behind.
set -euo pipefail

: "${BUILD:?set BUILD to the build to deploy}"
PIPELINE_RUN="${PIPELINE_RUN:-manual}"
TARGET_NAMESPACE="${TARGET_NAMESPACE:-payments-staging}"
CI_NAMESPACE="${CI_NAMESPACE:-ci}"
POLICY="${POLICY:-ci-deployers}"
IMAGE="${IMAGE:-payments:build-$BUILD}"
FILE_WITH="${FILE_WITH:-zsp}"
KUBECTL="${KUBECTL:-kubectl}"
ZSP="${ZSP:-zsp}"
JOB_TIMEOUT="${JOB_TIMEOUT:-10m}"
name="deploy-$BUILD"

echo "--> deploy Job $CI_NAMESPACE/$name, suspended"
$KUBECTL create -f - <<MANIFEST
apiVersion: batch/v1
kind: Job
metadata: {name: $name, namespace: $CI_NAMESPACE}
spec:
  suspend: true
  backoffLimit: 0
  activeDeadlineSeconds: 600
  template:
    spec:
      serviceAccountName: deployer
      restartPolicy: Never
      securityContext: {runAsNonRoot: true, runAsUser: 65532, seccompProfile: {type: RuntimeDefault}}
      containers:
        - name: deploy
          image: registry.k8s.io/kubectl:v1.31.0
          args: [-n, $TARGET_NAMESPACE, set, image, deployment/payments, "payments=$IMAGE"]
          securityContext:
            allowPrivilegeEscalation: false
            readOnlyRootFilesystem: true
            capabilities: {drop: [ALL]}
MANIFEST

end_grant() { $ZSP done "$name" -n "$TARGET_NAMESPACE" || true; }
trap end_grant EXIT

reason="deploy build $BUILD (pipeline run $PIPELINE_RUN)"
echo "--> AccessRequest $TARGET_NAMESPACE/$name: $reason"
if [ "$FILE_WITH" = kubectl ]; then
  $KUBECTL apply -f - <<MANIFEST
apiVersion: zsp.dev/v1alpha1
kind: AccessRequest
metadata: {name: $name, namespace: $TARGET_NAMESPACE}
spec:
  policy: $POLICY
  grantee: {serviceAccount: {namespace: $CI_NAMESPACE, name: deployer}}
  permission: deploy
  ttl: 15m
  reason: "$reason"
  taskRef: {apiVersion: batch/v1, kind: Job, namespace: $CI_NAMESPACE, name: $name}
MANIFEST
  $KUBECTL wait "accessrequest/$name" -n "$TARGET_NAMESPACE" --for=jsonpath='{.status.phase}'=Active --timeout=2m
else
  $ZSP request "$name" -n "$TARGET_NAMESPACE" --policy "$POLICY" --grantee-sa "$CI_NAMESPACE/deployer" \
    --permission deploy --ttl 15m --reason "$reason" --task "job/$name.$CI_NAMESPACE" --wait=2m
fi

echo "--> deploy"
$KUBECTL patch job "$name" -n "$CI_NAMESPACE" --type=merge -p '{"spec":{"suspend":false}}'
$KUBECTL wait "job/$name" -n "$CI_NAMESPACE" --for=condition=Complete --timeout="$JOB_TIMEOUT"
echo "--> deployed build $BUILD"
