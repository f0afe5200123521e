// An ordinary AWS Lambda handler for Node.js, served by nimbus unchanged.
export const handler = async (event, context) => {
  const name = event.pathParameters?.name ?? 'world';
  return {
    statusCode: 200,
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ hello: name, requestId: context.awsRequestId }),
  };
};
