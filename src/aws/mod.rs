//! The AWS adapter: the only module that uses the AWS SDK.
//!
//! It turns SDK outputs into plain snapshots and SDK errors into [`AwsError`], whose variants
//! tell a caller whether to retry, to treat the workforce as gone, or to give up.

mod ec2;
mod error;
mod workforce;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::timeout::TimeoutConfig;

use crate::domain::Region;

pub use ec2::{
    PortalZoneSource, PortalZones, SecurityGroupDetails, SubnetDetails, VpcDetails,
    VpcEndpointDetails, VpcInventory,
};
pub use error::AwsError;
pub use workforce::{CreateWorkforceInput, UpdateWorkforceInput, VpcSnapshot, WorkforceSnapshot};

/// The endpoints that the service's AWS clients use.
#[derive(Debug, Clone)]
pub enum Endpoint {
    /// The standard credential chain, region settings and endpoint variables
    /// (`AWS_ENDPOINT_URL_SAGEMAKER`, `AWS_ENDPOINT_URL_EC2`).
    Aws,
    /// A sandbox at this URL, with fixed dummy credentials for SigV4 signing.
    Sandbox { url: String },
}

/// The SDK clients of one region.
#[derive(Debug, Clone)]
struct RegionClients {
    sagemaker: aws_sdk_sagemaker::Client,
    ec2: aws_sdk_ec2::Client,
}

/// SageMaker and EC2 clients for each configured region.
#[derive(Debug, Clone)]
pub struct Aws {
    regions: Arc<HashMap<Region, RegionClients>>,
    /// Source of the availability zones that the worker portal supports, for the VPC checks.
    portal_zone_source: Arc<PortalZoneSource>,
}

/// Time allowed for one SDK call, retries included. SageMaker's workforce calls should return in well
/// under a second; this only bounds a hung connection.
pub const OPERATION_TIMEOUT: Duration = Duration::from_secs(30);

impl Aws {
    pub async fn connect(endpoint: &Endpoint, regions: &[Region]) -> Self {
        Self::connect_with(endpoint, regions, None).await
    }

    /// Connects like [`Aws::connect`], but sends EC2 calls to `ec2_endpoint_url` when it is
    /// set, such as an EC2 emulator, while SageMaker calls go to `endpoint`.
    pub async fn connect_with(
        endpoint: &Endpoint,
        regions: &[Region],
        ec2_endpoint_url: Option<&str>,
    ) -> Self {
        let mut clients = HashMap::new();
        for region in regions {
            let timeouts = TimeoutConfig::builder()
                .operation_timeout(OPERATION_TIMEOUT)
                .connect_timeout(Duration::from_secs(5))
                .build();
            let mut loader = aws_config::defaults(BehaviorVersion::latest())
                .region(aws_config::Region::new(region.as_str().to_owned()))
                .timeout_config(timeouts);
            if let Endpoint::Sandbox { url } = endpoint {
                loader = loader.endpoint_url(url.clone()).credentials_provider(
                    aws_sdk_sagemaker::config::Credentials::new(
                        "AKIDSANDBOX",
                        "sandbox-secret",
                        None,
                        None,
                        "sandbox",
                    ),
                );
            }
            let config = loader.load().await;
            clients.insert(
                region.clone(),
                RegionClients {
                    // No retries inside the SDK: each attempt is a call that the shared budget
                    // must count, so a worker retries a failed step through the budget.
                    sagemaker: aws_sdk_sagemaker::Client::from_conf(
                        aws_sdk_sagemaker::config::Builder::from(&config)
                            .retry_config(aws_config::retry::RetryConfig::disabled())
                            .build(),
                    ),
                    ec2: match ec2_endpoint_url {
                        Some(url) => aws_sdk_ec2::Client::from_conf(
                            aws_sdk_ec2::config::Builder::from(&config)
                                .endpoint_url(url)
                                .build(),
                        ),
                        None => aws_sdk_ec2::Client::new(&config),
                    },
                },
            );
        }
        Self {
            regions: Arc::new(clients),
            portal_zone_source: Arc::default(),
        }
    }

    /// Sets the source of the availability zones that the worker portal supports.
    pub fn with_portal_zones(mut self, source: PortalZoneSource) -> Self {
        self.portal_zone_source = Arc::new(source);
        self
    }

    fn clients(&self, region: &Region) -> Result<&RegionClients, AwsError> {
        self.regions.get(region).ok_or_else(|| AwsError::Rejected {
            code: "RegionNotConfigured".to_owned(),
            message: format!("region {region} is not configured in this service"),
            request_id: None,
        })
    }

    /// Returns the EC2 client of a region, for callers that inspect VPC resources.
    pub fn ec2(&self, region: &Region) -> Result<&aws_sdk_ec2::Client, AwsError> {
        Ok(&self.clients(region)?.ec2)
    }
}
