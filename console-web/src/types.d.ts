declare module "cytoscape-dagre" {
  const extension: cytoscape.Ext;
  export default extension;
}

declare module "cytoscape-svg" {
  const extension: cytoscape.Ext;
  export default extension;
}

declare module "*.css";
