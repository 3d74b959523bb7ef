/** The docker:// transport against a tls docker-registry. */
import { dockerTransportSuite } from "./docker-suite.js";

dockerTransportSuite("tls");
